#!/usr/bin/env bash
# Quality at an equal budget of training tokens (issue 16): the 2-layer 650 word language model
# (embedding 650, 10k vocabulary, batch 20, bptt 35) trained dense and with the training planner
# (`train --decompose auto`) for the same number of steps, so the same number of tokens, then the
# validation perplexity of each. The planner runs on the emulated cluster (cluster.sh) with 2 ranks
# on a 1 Gbit/s link, so its dense warm-up measures the slow link it plans for; dense runs on
# `mpirun -np 2` (shared memory: P ranks equal one process at the same global batch, so where it
# runs changes its time, not its result). Prints a markdown table (tokens, steps, validation
# perplexity, gap to dense, wall time) and the planner's decisions (its `plan:` lines).
#
#   bash bench/dist/quality.sh [--train FILE --valid FILE] [--tokens N | --epochs E] [--rate R]
#                              [--ranks P] [--min-rank R[,R...]] [--dropout X] [--keep DIR]
#     --train/--valid  the corpus (default: the King James Bible word split of bench/apps,
#                      ~/.cache/fastlstm/apps/kjv/word/{train,valid}.txt, made by tools/kjv.py
#                      when absent, as tools/apps_data.sh does)
#     --tokens N       training tokens of each run (rounded down to whole steps of batch x bptt)
#     --epochs E       or E passes over the training text (default 1); --tokens wins
#     --rate R         the planner's link (default 1gbit); --ranks P its ranks (default 2)
#     --min-rank LIST  the planner's smallest rank (--auto-min-rank), one planner run (and row) per
#                      entry; "default" is its own (hidden / 16). Default: default. Dense runs once.
#     --dropout X      on the LSTM outputs (default 0.5, as bench/apps' word LM)
#     --keep DIR       keep the logs and models in DIR (default: a temporary directory, removed)
#   FL_QUALITY_SIZE=tiny   a smoke test: hidden 32, embedding 32, 1k vocabulary, 20 steps (unless
#                          --tokens or --epochs says otherwise)
# Env: FL_CLI (default build/fastlstm). Both runs: Adam (lr 1e-3), gradient clip 5, seed 1, one
# BLAS thread per rank. Needs root for the cluster (see cluster.sh); exits 77 where it cannot work.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CLI=${FL_CLI:-$ROOT/build/fastlstm}
CL="$HERE/cluster.sh"
KJV=$HOME/.cache/fastlstm/apps/kjv
TRAIN="" VALID="" TOKENS="" EPOCHS=1 EPOCHS_SET=0 RATE=1gbit RANKS=2 DROPOUT=0.5 KEEP="" FLOORS=default
usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
    --train) TRAIN=${2:?--train needs a file}; shift ;;
    --valid) VALID=${2:?--valid needs a file}; shift ;;
    --tokens) TOKENS=${2:?--tokens needs a count}; shift ;;
    --epochs) EPOCHS=${2:?--epochs needs a count} EPOCHS_SET=1; shift ;;
    --rate) RATE=${2:?--rate needs a tc rate}; shift ;;
    --ranks) RANKS=${2:?--ranks needs a count}; shift ;;
    --dropout) DROPOUT=${2:?--dropout needs a value}; shift ;;
    --min-rank) FLOORS=${2:?--min-rank needs a list of ranks}; shift ;;
    --keep) KEEP=${2:?--keep needs a directory}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "quality.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[ -x "$CLI" ] || { echo "quality.sh: no fastlstm binary at $CLI (build first or set FL_CLI)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "quality.sh: mpirun not found (Open MPI)" >&2; exit 77; }
why=$(bash "$CL" check) || { echo "quality.sh: $why" >&2; exit 77; }
if [ -z "$TRAIN" ]; then
    if [ ! -s "$KJV/word/train.txt" ]; then
        command -v bible >/dev/null || { echo "quality.sh: no corpus: give --train/--valid or apt-get install -y bible-kjv" >&2; exit 1; }
        echo "quality.sh: making the King James Bible corpus in $KJV (tools/kjv.py)" >&2
        /usr/bin/python3 "$ROOT/tools/kjv.py" "$KJV" >&2
    fi
    TRAIN=$KJV/word/train.txt VALID=${VALID:-$KJV/word/valid.txt}
fi
[ -n "$VALID" ] || { echo "quality.sh: --train needs --valid too" >&2; exit 2; }
FLOORS=${FLOORS//,/ }
for f in $FLOORS; do
    [ "$f" = default ] || [ "$f" -ge 1 ] 2>/dev/null || { echo "quality.sh: --min-rank: '$f' is not a rank" >&2; exit 2; }
done
[ -s "$TRAIN" ] && [ -s "$VALID" ] || { echo "quality.sh: missing or empty $TRAIN or $VALID" >&2; exit 1; }

B=20 BPTT=35
if [ "${FL_QUALITY_SIZE:-full}" = tiny ]; then
    H=32 E=32 V=1000
    [ -n "$TOKENS" ] || [ "$EPOCHS_SET" = 1 ] || TOKENS=$((20 * B * BPTT))
else
    H=650 E=650 V=10000
fi
# The budget: --tokens as whole steps, else --epochs whole passes (fastlstm counts the epoch's
# steps; the planner's warm-up steps count against both). N, PER: about (words + one <eos> a line).
N=$(awk '{ n += NF + 1 } END { print n }' "$TRAIN")
PER=$((N / B / BPTT))
if [ -n "$TOKENS" ]; then STEPS=$((TOKENS / (B * BPTT))); else STEPS=0; fi
[ $((STEPS > 0 ? STEPS : PER * EPOCHS)) -ge 4 ] || { echo "quality.sh: too few steps (need 4: warm-up and planned phase)" >&2; exit 2; }
EP=$((STEPS > 0 ? (STEPS + PER - 1) / PER + 1 : EPOCHS))

if [ -n "$KEEP" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d /tmp/fl_quality_XXXXXX); fi
export FLC_STATE="$W/cluster" OPENBLAS_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
trap 'bash "$CL" down >/dev/null 2>&1 || true; [ -n "$KEEP" ] || rm -rf "$W"' EXIT
COMMON=(train --task lm --train-text "$TRAIN" --valid-text "$VALID" --level word --vocab-size "$V" --hidden "$H"
        --layers 2 --embed "$E" --batch "$B" --bptt "$BPTT" --dropout "$DROPOUT" --epochs "$EP" --max-steps "$STEPS"
        --seed 1 --threads 1 --dist)

# run NAME CMD...: wall seconds into $W/NAME.s, stdout / stderr into $W/NAME.out / .err
run() {
    local name=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    if ! "$@" >"$W/$name.out" 2>"$W/$name.err"; then
        echo "quality.sh: the $name run failed:" >&2
        tail -5 "$W/$name.err" >&2
        exit 1
    fi
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", b - a }' >"$W/$name.s"
}
# final validation perplexity and steps from "wrote M after E epoch(s), S step(s); valid loss L, perplexity P"
ppl() { grep -o "perplexity [0-9.]*" "$W/$1.out" | tail -1 | cut -d' ' -f2; }
steps() { grep -o "[0-9]* step(s)" "$W/$1.out" | tail -1 | cut -d' ' -f1; }

echo "quality.sh: $([ "$STEPS" -gt 0 ] && echo "$STEPS steps" || echo "$EPOCHS epoch(s)") of $B x $BPTT tokens each run (hidden $H, vocabulary $V); dense on mpirun -np $RANKS" >&2
run dense mpirun --allow-run-as-root --oversubscribe -np "$RANKS" "$CLI" "${COMMON[@]}" -o "$W/dense.st"
for f in $FLOORS; do
    plan=(--decompose auto)
    [ "$f" = default ] || plan+=(--auto-min-rank "$f")
    echo "quality.sh: planner (${plan[*]}) on the cluster, $RANKS ranks at $RATE" >&2
    run "planner-$f" bash "$CL" run "$RANKS" --rate "$RATE" -- "$CLI" "${COMMON[@]}" "${plan[@]}" -o "$W/planner-$f.st"
done

pd=$(ppl dense) sd=$(steps dense)
[ -n "$pd" ] || { echo "quality.sh: no final perplexity in the logs ($W)" >&2; exit 1; }
echo "| model | where | tokens | steps | valid ppl | gap to dense | wall s |"
echo "|---|---|---|---|---|---|---|"
echo "| dense | mpirun -np $RANKS | $((sd * B * BPTT)) | $sd | $pd | - | $(cat "$W/dense.s") |"
for f in $FLOORS; do
    pp=$(ppl "planner-$f") sp=$(steps "planner-$f")
    [ -n "$pp" ] || { echo "quality.sh: no final perplexity in the logs ($W)" >&2; exit 1; }
    gap=$(awk -v a="$pd" -v b="$pp" 'BEGIN { printf "%+.2f%%", 100 * (b / a - 1) }')
    label="--decompose auto"
    [ "$f" = default ] || label="$label --auto-min-rank $f"
    echo "| planner ($label) | cluster, $RANKS ranks, $RATE | $((sp * B * BPTT)) | $sp | $pp | $gap | $(cat "$W/planner-$f.s") |"
done
for f in $FLOORS; do
    echo
    echo "The planner's decisions ($([ "$f" = default ] && echo "its own rank floor" || echo "--auto-min-rank $f")):"
    echo
    echo '```'
    grep "^plan:" "$W/planner-$f.err"
    echo '```'
done
echo
echo "corpus: $TRAIN (about $N training tokens, $PER steps an epoch); size: ${FL_QUALITY_SIZE:-full} (hidden $H x 2, embedding $E, vocabulary $V, dropout $DROPOUT); host: $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
