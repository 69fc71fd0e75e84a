#!/bin/bash
# Two bench_gate_one binaries (see bench/bench_gate_one.c: one per build) alternated at one or more
# shapes, A B then B A, ...:
#
#   bench/ab_gate_one.sh OLD_BIN NEW_BIN ROUNDS LEVEL "H K B" ["H K B" ...]
#
# Per shape prints the median over rounds of each binary's us per call and the median of the
# per-round ratios new / old. Hold the timing lock around it (flock LOCK bench/ab_gate_one.sh ...).
set -euo pipefail
if [ $# -lt 5 ]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
OLD=$1 NEW=$2 R=$3 L=$4
shift 4
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for s in "$@"; do
    o=() n=() r=()
    for ((i = 0; i < R; i++)); do
        # shellcheck disable=SC2086 # the shape is three words
        if ((i % 2)); then b=$("$NEW" "$L" $s); a=$("$OLD" "$L" $s); else a=$("$OLD" "$L" $s); b=$("$NEW" "$L" $s); fi
        o+=("$a") n+=("$b") r+=("$(echo "$b / $a" | bc -l)")
    done
    printf 'H K B %-14s old %9.2f new %9.2f us/call  new/old %.3f  (%d rounds)\n' "$s" "$(med "${o[@]}")" "$(med "${n[@]}")" "$(med "${r[@]}")" "$R"
done
