#!/usr/bin/env bash
# CLI for the schedules of a session's steps (fl_step_sched, fl_bidir_sched): fastlstm bench runs with
# each --step-sched and --bidir-sched value, a batch of 3 on 2 threads (rows: chunks of 2 and 1), and
# refuses an unknown value with usage status 2 and the value named. Nothing is timed against a threshold.
# Environment (set by CTest): FL_CLI = the fastlstm binary.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
. "$(dirname "$0")/cli_lib.sh"

expect 0 "$CLI" init --input 8 --hidden 48 --layers 2 --bidirectional -o "$T/b.st"
run=(--batch 3 --seq 5 --threads 2 --reps 1 --warmup 0)
for s in auto blocks rows; do
    for b in auto parallel serial; do
        expect 0 "$CLI" bench "$T/b.st" "${run[@]}" --step-sched $s --bidir-sched $b && has out "latency:"
    done
done
expect 2 "$CLI" bench "$T/b.st" --step-sched diagonal && has err "--step-sched must be auto, blocks or rows, got 'diagonal'"
expect 2 "$CLI" bench "$T/b.st" --bidir-sched sideways && has err "got 'sideways'"
expect 0 "$CLI" bench --help && has out "--step-sched auto|blocks|rows"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all step schedule CLI tests passed"
