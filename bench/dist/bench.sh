#!/usr/bin/env bash
# Distributed-training benchmark on the emulated cluster (bench/dist/cluster.sh): a 2-layer LSTM
# language model trained data-parallel on 1 (reference, no network), 2 and 4 ranks at 1 Gbit/s and
# 10 Gbit/s, dense vs SVD vs CP (LSTM matrices at rank R, head as rank-R SVD) vs the training
# planner (--decompose auto, where this build has it), and PyTorch DistributedDataParallel (gloo) on
# the same cluster. Prints a markdown table: time/step, bytes/step, scaling efficiency (T1 / (P TP),
# same global batch), share of communication hidden by overlap, energy/step and /epoch, validation
# perplexity after the run.
#
#   bash bench/dist/bench.sh            full size: 2 x 650, embedding 650, 10k vocabulary, batch 20,
#                                       bptt 35, FL_BENCH_STEPS (default 20) timed steps; synthetic
#                                       corpus of 1M training and 20k validation tokens
#   FL_BENCH_SIZE=tiny bash bench/dist/bench.sh   a smoke test: 2 x 32, 1k vocabulary, 4 steps
# Env: FL_CLI (default build/fastlstm), FL_BENCH_RANKS ("2 4"), FL_BENCH_RATES ("1gbit 10gbit"),
#      FL_BENCH_METHODS (default "dense svd cp planner"), FL_BENCH_LOGS=DIR keeps every run's log,
#      FL_BENCH_RANK (decomposition rank, default 64), FL_BENCH_DDP=0 to skip PyTorch.
# Needs root (network namespaces, see cluster.sh). 4 ranks on a 2-core machine are oversubscribed:
# compare 4-rank rows with each other, not with 2-rank rows. Each rank uses one BLAS thread.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLI=${FL_CLI:-$ROOT/build/fastlstm}
CL="$HERE/cluster.sh"
[ -x "$CLI" ] || { echo "bench.sh: no fastlstm binary at $CLI (build first or set FL_CLI)" >&2; exit 1; }
why=$(bash "$CL" check) || { echo "bench.sh: $why" >&2; exit 77; }

if [ "${FL_BENCH_SIZE:-full}" = tiny ]; then
    H=32 V=1000 E=32 TOKENS=20000 VALID=2000 TYPES=1200 STEPS=${FL_BENCH_STEPS:-4} R=${FL_BENCH_RANK:-8}
else
    H=650 V=10000 E=650 TOKENS=1000000 VALID=20000 TYPES=12000 STEPS=${FL_BENCH_STEPS:-20} R=${FL_BENCH_RANK:-64}
fi
RANKS=${FL_BENCH_RANKS:-2 4}
RATES=${FL_BENCH_RATES:-1gbit 10gbit}
W=$(mktemp -d /tmp/fl_bench_dist_XXXXXX)
export FLC_STATE="$W/cluster" OPENBLAS_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
trap 'bash "$CL" down >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
/usr/bin/python3 "$HERE/corpus.py" "$W" "$TOKENS" "$TYPES" "$VALID"

COMMON=(train --task lm --train "$W/train.txt" --valid "$W/valid.txt" --vocab-size "$V" --hidden "$H" --layers 2
        --embed "$E" --batch 20 --bptt 35 --epochs 1 --max-steps "$STEPS" --dist)
declare -A DEC=([dense]="" [svd]="--decompose svd:$R --head-rank $R" [cp]="--decompose cp:$R --head-rank $R")
METHODS="dense svd cp"
"$CLI" train --help | grep -- "--decompose auto" >/dev/null && { DEC[planner]="--decompose auto"; METHODS="$METHODS planner"; }
METHODS=${FL_BENCH_METHODS:-$METHODS}
LOGS=${FL_BENCH_LOGS:-}
[ -z "$LOGS" ] || mkdir -p "$LOGS"
keep() { [ -z "$LOGS" ] || cp "$W/log" "$LOGS/$1.log"; } # keep LABEL: the run's log, when FL_BENCH_LOGS is set

# fields LOG: "s/step bytes/step hidden% J/step kJ/epoch ppl" from a run's log; for the planner, the
# steps after its switch to the planned model (its own summary lines) when it switched
fields() {
    local f=$1 sel=cat
    grep -q "after the switch" "$f" && sel="grep after.the.switch"
    local s b h j e p
    s=$(grep "s/step over" "$f" | $sel | grep -o "[0-9.e+-]* s/step" | tail -1 | cut -d' ' -f1)
    b=$(grep "bytes/step" "$f" | $sel | grep -o "[0-9]* bytes/step" | grep -o "[0-9]*" | tail -1)
    h=$(grep "bytes/step" "$f" | $sel | grep -o "([0-9]*% hidden" | grep -o "[0-9]*" | tail -1)
    j=$(grep "bytes/step" "$f" | $sel | grep -o "[0-9.e+-]* J/step" | cut -d' ' -f1 | tail -1)
    e=$(grep "bytes/step" "$f" | $sel | grep -o "[0-9.e+-]* kJ/epoch" | cut -d' ' -f1 | tail -1)
    p=$(grep -o "perplexity [0-9.]*" "$f" | tail -1 | cut -d' ' -f2)
    echo "${s:-?} ${b:-?} ${h:-?} ${j:-?} ${e:-?} ${p:-?}"
}

declare -A T1
echo "| ranks | link | model | s/step | bytes/step | scaling eff. | comm hidden | J/step | kJ/epoch | valid ppl |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for m in $METHODS; do # reference: one rank, no network
    # shellcheck disable=SC2086
    mpirun --allow-run-as-root -np 1 "$CLI" "${COMMON[@]}" ${DEC[$m]} -o "$W/m.st" >"$W/log" 2>&1 || { echo "| 1 | - | $m | failed: $(tail -1 "$W/log") |"; continue; }
    keep "1-$m"
    read -r s b h j e p <<<"$(fields "$W/log")"
    T1[$m]=$s
    echo "| 1 | - | $m | $s | 0 | 1 | - | $j | $e | $p |"
done
for P in $RANKS; do
    for rate in $RATES; do
        for m in $METHODS; do
            # shellcheck disable=SC2086
            if ! bash "$CL" run "$P" --rate "$rate" -- "$CLI" "${COMMON[@]}" ${DEC[$m]} -o "$W/m.st" >"$W/log" 2>&1; then
                echo "| $P | $rate | $m | failed: $(grep -m1 -i "error\|fastlstm" "$W/log" | head -c 120) |"
                continue
            fi
            keep "$P-$rate-$m"
            read -r s b h j e p <<<"$(fields "$W/log")"
            eff=$(awk -v a="${T1[$m]:-0}" -v b="$s" -v p="$P" 'BEGIN{ if (a > 0 && b > 0) printf "%.2f", a / (p * b); else print "?" }')
            echo "| $P | $rate | $m | $s | $b | $eff | $h% | $j | $e | $p |"
        done
        if [ "${FL_BENCH_DDP:-1}" != 0 ]; then
            if bash "$CL" run "$P" --rate "$rate" -- /usr/bin/python3 "$HERE/ddp.py" "$W/train.txt" --vocab "$V" \
                --hidden "$H" --layers 2 --embed "$E" --batch 20 --bptt 35 --steps "$STEPS" >"$W/log" 2>&1; then
                s=$(grep -o "[0-9.e+-]* s/step" "$W/log" | cut -d' ' -f1)
                b=$(grep -o "[0-9]* bytes/step" "$W/log" | cut -d' ' -f1)
                echo "| $P | $rate | PyTorch DDP (gloo) | $s | $b | - | - | - | - | - |"
            else
                echo "| $P | $rate | PyTorch DDP (gloo) | failed: $(tail -1 "$W/log" | head -c 120) |"
            fi
        fi
    done
done
echo
echo "size: ${FL_BENCH_SIZE:-full} (hidden $H, vocab $V, embed $E, rank $R, $STEPS steps); host: $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
