#!/usr/bin/env bash
# `fastlstm train --decompose auto` (the training planner) on one process: it warms up dense,
# reports what it measured, a choice per matrix with its estimated cost, the validation check at
# the switch, and the saved model holds the factors it chose (on one process there is no link, so
# fewer flops win: every matrix is decomposed unless the check fails, in which case it says so).
# The step budget counts both phases; --auto-min-rank sets the smallest rank. Bad planner options
# are usage errors.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
T=$(mktemp -d /tmp/fl_test_dist_auto_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OPENBLAS_NUM_THREADS=1
. "$(dirname "$0")/cli_lib.sh"

"$PY" - "$T" <<'EOF2' || { echo "FAIL: cannot write test data"; exit 1; }
import sys, numpy as np
r = np.random.default_rng(2)
w = ['w%d' % i for i in range(60)]
for name, n in (('train', 3000), ('valid', 600)):
    ids = r.integers(0, 60, n)
    open(sys.argv[1] + '/' + name + '.txt', 'w').write('\n'.join(' '.join(w[i] for i in ids[k:k + 12]) for k in range(0, n, 12)))
EOF2
LM=(--task lm --train "$T/train.txt" --valid "$T/valid.txt" --hidden 32 --embed 16 --layers 2 --batch 4 --bptt 8
    --epochs 1 --max-steps 20 --optim sgd --lr 1)
if expect 0 "$CLI" train "${LM[@]}" --decompose auto --auto-warmup 4 --auto-tol 10 -o "$T/a.st"; then
    has err "plan: dense warm-up for 4 steps"
    has err "GFLOP/s per rank, 1 rank(s) (no link)"
    for mtx in lstm.weight_ih_l0 lstm.weight_hh_l0 lstm.weight_ih_l1 lstm.weight_hh_l1 head.weight; do
        grep -q "plan: $mtx *[a-z]* *rank [0-9]* *est\." "$T/err" || fail "no plan line for $mtx"
    done
    has err "check loss"
    has err "switched to the decomposed model after 4 dense steps"
    has out "after 0 epoch(s), 20 step(s)" # 4 dense + 16 factored = --max-steps 20
    has err "continues at the same point of the data"
    expect 0 "$CLI" info "$T/a.st"
    grep -Eq "svd|cp" "$T/out" || fail "the saved model has no decomposed matrix"
fi
# --auto-tol 0: a switch only when the check loss did not rise
if expect 0 "$CLI" train "${LM[@]}" --decompose auto --auto-warmup 3 --auto-tol 0 -o "$T/b.st"; then
    grep -q "switched to the decomposed" "$T/err" && ! grep -q "check loss .*(-" "$T/err" &&
        fail "switched although the check loss rose with --auto-tol 0"
fi
# --auto-min-rank: no matrix below it (hidden 32: the default floor is 2)
if expect 0 "$CLI" train "${LM[@]}" --decompose auto --auto-warmup 3 --auto-tol 10 --auto-min-rank 8 -o "$T/d.st"; then
    grep -q "plan: lstm.weight_hh_l0 *[a-z]* *rank 8 " "$T/err" || fail "--auto-min-rank 8 did not set the rank"
    grep -Eq "plan: [a-z._0-9]+ +(svd|cp) +rank [2-7] " "$T/err" && fail "a rank below --auto-min-rank 8"
fi
expect 2 "$CLI" train "${LM[@]}" --decompose auto --auto-min-rank 0 -o "$T/c.st"
expect 2 "$CLI" train "${LM[@]}" --decompose auto --auto-tol -1 -o "$T/c.st"
expect 2 "$CLI" train "${LM[@]}" --decompose auto --auto-warmup 0 -o "$T/c.st"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "planner checks passed"
