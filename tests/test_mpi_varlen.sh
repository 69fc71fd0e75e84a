#!/usr/bin/env bash
# `mpirun -np 2 fastlstm train` equals one process for the architectures of issue 11 (CTest label
# mpi): a masked variable-length bidirectional classifier (odd batch 9: slices of 4 and 5 sequences
# of different lengths) and an LSTMP language model (carried state h of size P gathered across
# ranks). Environment (set by CTest): FL_CLI, FL_PYTHON (numpy).
set -u
. "$(dirname "$0")/dist_lib.sh"
mpi_test_setup mpi_varlen

"$PY" - "$T" <<'EOF' || { echo "FAIL: cannot write test data"; exit 1; }
import sys, numpy as np
r = np.random.default_rng(5)
x = r.standard_normal((41, 7, 4)).astype(np.float32)
n = r.integers(1, 8, 41).astype(np.int64)
np.save(sys.argv[1] + '/x.npy', x)
np.save(sys.argv[1] + '/n.npy', n)
np.save(sys.argv[1] + '/y.npy', np.array([int(x[i, :n[i]].sum() > 0) for i in range(41)], dtype=np.int32))
w = 'the cat sat on a mat and the dog ran to the red house'.split()
open(sys.argv[1] + '/c.txt', 'w').write('\n'.join(' '.join(w[(i * 7 + j * 3) % len(w)] for j in range(9)) for i in range(60)))
EOF

BI=(--task classify --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/n.npy" --bidirectional
    --layers 2 --hidden 8 --epochs 2 --batch 9 --optim sgd --lr 0.5 --momentum 0.9)
expect 0 "${MPI2[@]}" "$CLI" train "${BI[@]}" -o "$T/b2.st"
expect 0 "$CLI" train "${BI[@]}" -o "$T/b1.st" && same "$T/b2.st" "$T/b1.st" 1e-5

LMP=(--task lm --train "$T/c.txt" --proj 4 --hidden 10 --embed 6 --epochs 1 --batch 3 --bptt 5 --optim sgd --lr 1)
expect 0 "${MPI2[@]}" "$CLI" train "${LMP[@]}" --max-steps 8 -o "$T/l2.st"
expect 0 "$CLI" train "${LMP[@]}" --max-steps 8 -o "$T/l1.st" && same "$T/l2.st" "$T/l1.st" 1e-5

if [ "$failures" -gt 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all MPI varlen checks passed"
