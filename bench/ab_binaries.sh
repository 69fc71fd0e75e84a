#!/bin/bash
# Two fastlstm builds against each other end to end, interleaved (A B, then B A, ...), one thread:
#
#   bench/ab_binaries.sh OLD_FASTLSTM NEW_FASTLSTM ROUNDS MODEL BATCH SEQ [more fastlstm bench options]
#
# Per round each binary runs `fastlstm bench MODEL --batch BATCH --seq SEQ --threads 1 --warmup-ms 150
# --reps $REPS (default 20) --json`. Prints the medians over rounds of each binary's per-step median
# and of its per-step minimum (us), and the median of the per-round ratios new / old. Hold the timing
# lock around it on a shared machine (flock LOCK bench/ab_binaries.sh ...).
set -euo pipefail
if [ $# -lt 6 ]; then
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
OLD=$1 NEW=$2 R=$3 M=$4 B=$5 T=$6
shift 6
EXTRA=("$@")
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
run() {
    "$1" bench "$M" --batch "$B" --seq "$T" --threads 1 --warmup-ms 150 --reps "${REPS:-20}" --json "${EXTRA[@]}" |
        awk -F'[:,]' '/"step_us"/{gsub(/[ \t]/,"",$2); a=$2} /"step_us_min"/{gsub(/[ \t]/,"",$2); m=$2} END{print a, m}'
}
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
o=() n=() om=() nm=() r=()
for ((i = 0; i < R; i++)); do
    if ((i % 2)); then
        read -r b bm < <(run "$NEW"); read -r a am < <(run "$OLD")
    else
        read -r a am < <(run "$OLD"); read -r b bm < <(run "$NEW")
    fi
    o+=("$a") n+=("$b") om+=("$am") nm+=("$bm") r+=("$(echo "$b / $a" | bc -l)")
done
printf '%-22s B %-4s T %-4s old %8.1f new %8.1f us/step (median)  new/old %.3f  min old %8.1f new %8.1f  (%d rounds)\n' \
    "$(basename "$M")" "$B" "$T" "$(med "${o[@]}")" "$(med "${n[@]}")" "$(med "${r[@]}")" "$(med "${om[@]}")" "$(med "${nm[@]}")" "$R"
