#!/usr/bin/env bash
# Faults in distributed training (CTest label mpi). A rank that hangs (as one whose link is down
# would) makes the whole job stop with the watchdog's error naming the waiting rank and the step,
# well within the timeout plus a few seconds, instead of hanging; a rank killed mid-run ends the job
# too; and a 2-rank run killed after its last checkpoint, resumed on 1 rank, ends where one
# uninterrupted run does. Faults come from FL_DIST_FAULT (see include/fastlstm/dist.h).
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
MPIRUN=$(command -v mpirun) || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
T=$(mktemp -d /tmp/fl_test_dist_fault_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
. "$(dirname "$0")/cli_lib.sh"
. "$(dirname "$0")/dist_lib.sh"
MPI2=("$MPIRUN" --allow-run-as-root --oversubscribe -np 2)

# fails CMD...: CMD must exit nonzero (not 124: a hang) within 60 s
fails() {
    timeout 60 "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq 124 ]; then fail "'$*' hung (killed after 60 s)"; return 1; fi
    if [ "$rc" -eq 0 ]; then fail "'$*' succeeded, want a failure"; return 1; fi
    return 0
}

"$PY" - "$T" <<'EOF2' || { echo "FAIL: cannot write test data"; exit 1; }
import sys
w = 'the cat sat on a mat and the dog ran to the red house'.split()
open(sys.argv[1] + '/c.txt', 'w').write('\n'.join(' '.join(w[(i * 7 + j * 3) % len(w)] for j in range(9)) for i in range(80)))
EOF2
LM=(--task lm --train "$T/c.txt" --hidden 16 --embed 8 --epochs 1 --batch 4 --bptt 5 --optim sgd --lr 1)

# a hung rank: the other's watchdog (2 s) ends the job
start=$SECONDS
if FL_DIST_FAULT=hang@1:3 fails "${MPI2[@]}" "$CLI" train "${LM[@]}" --max-steps 12 --watchdog 2 -o "$T/h.st"; then
    has err "distributed training stalled: rank 0 of 2"
    has err "at step 3"
    [ $((SECONDS - start)) -le 30 ] || fail "the stalled job took $((SECONDS - start)) s to stop (watchdog 2 s)"
fi
[ -e "$T/h.st" ] && fail "a stalled job wrote its model"

# a killed rank ends the job
FL_DIST_FAULT=kill@0:2 fails "${MPI2[@]}" "$CLI" train "${LM[@]}" --max-steps 12 -o "$T/k.st"

# killed at step 7 after the checkpoint of step 6, resumed on one rank: as if never interrupted
if FL_DIST_FAULT=kill@1:7 fails "${MPI2[@]}" "$CLI" train "${LM[@]}" --max-steps 12 --checkpoint "$T/r.ck" --every 3 \
    -o "$T/r.st"; then
    [ -f "$T/r.ck" ] || fail "no checkpoint before the fault"
    if expect 0 "$CLI" train "${LM[@]}" --max-steps 12 --checkpoint "$T/r.ck" --resume -o "$T/r.st"; then
        has err "resuming from $T/r.ck at epoch 1, step 6"
        expect 0 "$CLI" train "${LM[@]}" --max-steps 12 -o "$T/u.st" && same "$T/r.st" "$T/u.st" 1e-5
    fi
fi

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "fault checks passed"
