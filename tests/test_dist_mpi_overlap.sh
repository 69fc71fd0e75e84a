#!/usr/bin/env bash
# Overlapped gradient reduction (`--bucket-mb`, CTest label mpi): `mpirun -np 2 fastlstm train` with
# tiny buckets (dozens of non-blocking allreduces per step, posted while backward runs) ends with the
# same weights as one process, for a classifier (odd batch) and a 2-layer language model, dense and
# SVD; so does --bucket-mb 0 (one blocking allreduce). The summary reports the communication and the
# energy estimate, and the progress lines carry the energy column.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
MPIRUN=$(command -v mpirun) || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
T=$(mktemp -d /tmp/fl_test_dist_overlap_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
. "$(dirname "$0")/cli_lib.sh"
. "$(dirname "$0")/dist_lib.sh"
MPI2=("$MPIRUN" --allow-run-as-root --oversubscribe -np 2)

"$PY" - "$T" <<'EOF2' || { echo "FAIL: cannot write test data"; exit 1; }
import sys, numpy as np
r = np.random.default_rng(5)
x = r.standard_normal((41, 5, 4)).astype(np.float32)
np.save(sys.argv[1] + '/x.npy', x)
np.save(sys.argv[1] + '/y.npy', (x.sum(axis=(1, 2)) > 0).astype(np.int32))
w = 'a b c d e f g h i j k l m n o p q r s t'.split()
open(sys.argv[1] + '/c.txt', 'w').write('\n'.join(' '.join(w[(i * 7 + j * 3) % len(w)] for j in range(8)) for i in range(90)))
EOF2

# 0.0002 MiB = 52 floats per bucket
CL=(--task classify --train "$T/x.npy" --train-labels "$T/y.npy" --hidden 12 --layers 2 --epochs 2 --batch 7
    --optim sgd --lr 0.5 --momentum 0.9)
expect 0 "$CLI" train "${CL[@]}" -o "$T/c1.st"
if expect 0 "${MPI2[@]}" "$CLI" train "${CL[@]}" --bucket-mb 0.0002 -o "$T/c2.st"; then
    has err "reduced in buckets overlapping backward"
    has err "hidden behind backward"
    grep -q "energy [0-9.e+-]* J in all" "$T/err" || fail "no energy total in the summary"
    same "$T/c2.st" "$T/c1.st" 1e-5
fi
expect 0 "${MPI2[@]}" "$CLI" train "${CL[@]}" --bucket-mb 0 -o "$T/c0.st" && has err "one allreduce after backward" &&
    same "$T/c0.st" "$T/c1.st" 1e-5

LM=(--task lm --train "$T/c.txt" --hidden 10 --layers 2 --embed 6 --epochs 1 --batch 4 --bptt 6 --optim sgd --lr 1 --max-steps 10)
expect 0 "$CLI" train "${LM[@]}" -o "$T/l1.st"
# sparse embedding rows (the default) and the dense embedding gradient: same weights, fewer bytes
bytes() { grep -o "[0-9]* bytes/step allreduced" "$T/err" | grep -o "^[0-9]*"; }
expect 0 "${MPI2[@]}" "$CLI" train "${LM[@]}" --bucket-mb 0.0002 -o "$T/l2.st" && same "$T/l2.st" "$T/l1.st" 1e-5
grep -q "energy [0-9.e+-]* J/step" "$T/err" || fail "no energy column in the progress lines"
sparse=$(bytes)
expect 0 "${MPI2[@]}" "$CLI" train "${LM[@]}" --embed-grad dense -o "$T/l3.st" && same "$T/l3.st" "$T/l1.st" 1e-5
dense=$(bytes)
echo "bytes per step: sparse embedding ${sparse:-?}, dense ${dense:-?}"
[ -n "$sparse" ] && [ -n "$dense" ] && [ "$sparse" -lt "$dense" ] || fail "the sparse embedding should send fewer bytes"
expect 0 "$CLI" train "${LM[@]}" --decompose svd:3 -o "$T/s1.st"
expect 0 "${MPI2[@]}" "$CLI" train "${LM[@]}" --decompose svd:3 --bucket-mb 0.0001 -o "$T/s2.st" && same "$T/s2.st" "$T/s1.st" 1e-5

# the training planner's run: a summary of the whole run and one of the steps after its switch,
# each with the epoch length and the energy of an epoch (--auto-tol 10: the check always passes)
if expect 0 "${MPI2[@]}" "$CLI" train "${LM[@]}" --decompose auto --auto-warmup 3 --auto-tol 10 -o "$T/p.st"; then
    has err "switched to the decomposed model after 3 dense steps"
    has err "s/step over 10 steps (33 steps an epoch)"
    has err "s/step over 7 steps after the switch to the planned model (33 steps an epoch)"
    grep -q "communication after the switch to the planned model: [0-9]* bytes/step.* kJ/epoch" "$T/err" ||
        fail "no communication summary after the switch"
fi

expect 2 "${MPI2[@]}" "$CLI" train "${LM[@]}" --bucket-mb -1 -o "$T/bad.st"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "overlap checks passed"
