#!/usr/bin/env bash
# bench/dist/quality.sh, tiny size on a synthetic corpus: dense (mpirun -np 2) and the training
# planner (2 ranks on the emulated 1 Gbit/s cluster) train for the same number of steps and tokens,
# the table has a row for dense and one per --min-rank entry with a perplexity and the gap to
# dense, the planner measured a link
# and said what it decided; too few steps is a usage error. Skips (77) without mpirun or where the
# cluster cannot be made (no root / CAP_NET_ADMIN).
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)
Q="$HERE/../bench/dist/quality.sh"
. "$HERE/cli_lib.sh"

command -v mpirun >/dev/null || { echo "SKIP: no mpirun"; exit 77; }
why=$(bash "$HERE/../bench/dist/cluster.sh" check) || { echo "SKIP: ${why:-cluster.sh check failed}"; exit 77; }
mkdir -p "$T/data" && "$PY" "$HERE/../bench/dist/corpus.py" "$T/data" 12000 300 >/dev/null || { echo "FAIL: cannot write the corpus"; exit 1; }

Q_ARGS=(--train "$T/data/train.txt" --valid "$T/data/valid.txt" --keep "$T/keep")
# two trainings and a cluster: more than expect's 60 s on a loaded machine, so a limit of its own
FL_QUALITY_SIZE=tiny timeout 300 bash "$Q" "${Q_ARGS[@]}" --tokens 7000 --min-rank default,8 >"$T/out" 2>"$T/err"
rc=$?
[ "$rc" -eq 0 ] || fail "quality.sh exited $rc, want 0 (124: killed after 300 s)"
if [ "$rc" -eq 0 ]; then
    grep -q "^| dense | mpirun -np 2 | 7000 | 10 | [0-9.]* | - |" "$T/out" || fail "no dense row of 7000 tokens in 10 steps"
    grep -q "^| planner (--decompose auto) | cluster, 2 ranks, 1gbit | 7000 | 10 | [0-9.]* | [-+][0-9.]*% |" "$T/out" ||
        fail "no planner row of 7000 tokens in 10 steps with a gap to dense"
    grep -q "^| planner (--decompose auto --auto-min-rank 8) | cluster, 2 ranks, 1gbit | 7000 | 10 | [0-9.]* | [-+][0-9.]*% |" \
        "$T/out" || fail "no row for the planner with --auto-min-rank 8"
    grep -q "^plan: lstm.weight_hh_l0 *[a-z]* *rank 8 " "$T/out" || fail "the --min-rank 8 run's plan lacks rank 8"
    has out "plan: link:"
    grep -Eq "plan: (switched to the decomposed model|staying dense|no decomposition passed)" "$T/out" ||
        fail "the planner's decision is not reported"
    [ -s "$T/keep/dense.st" ] && [ -s "$T/keep/planner-default.st" ] && [ -s "$T/keep/planner-8.st" ] ||
        fail "--keep did not keep the models"
fi
FL_QUALITY_SIZE=tiny expect 2 bash "$Q" "${Q_ARGS[@]}" --tokens 1000
has err "too few"
expect 2 bash "$Q" --bogus
expect 2 bash "$Q" "${Q_ARGS[@]}" --min-rank 8,x

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "quality checks passed"
