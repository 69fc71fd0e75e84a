#!/usr/bin/env bash
# CLI for the step schedule recorded in a model (plan_threads.c, metadata "step_schedule"): info shows
# none / the recorded one (text and JSON); compress and plan (text and --json) with a layer on 2 threads, 2 rows per thread
# and timing on record one of the two and print it, with --no-measure none; a hand-edited bad value is
# refused naming the file and the value. Nothing is timed against a threshold.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"
TAB=$'\t'

expect 0 "$CLI" init --input 8 --hidden 48 --layers 2 --classes 3 -o "$T/u.st"
expect 0 "$CLI" info "$T/u.st" && has out "step sched:   none planned"
expect 0 "$CLI" info "$T/u.st" --json && has out "\"step_schedule\":${TAB}\"auto\""

# timed (a posed machine still times the candidates) at 2 threads, batch 4: one of the two, printed and written
pose=(--seq 6 --cache-bytes 33554432 --bandwidth 15 --flops 60 --max-evals 3 --threads 2)
expect 0 "$CLI" compress "$T/u.st" -o "$T/c.st" --batch 4 "${pose[@]}" && has err "step schedule: " && has err " kept ("
got=$(grep -o "step schedule: [a-z]* kept" "$T/err" | awk '{print $3}')
[ "$got" = rows ] || [ "$got" = blocks ] || fail "no step schedule kept in the progress"
expect 0 "$CLI" info "$T/c.st" && has out "step sched:   $got (planned"
expect 0 "$CLI" info "$T/c.st" --json && has out "\"step_schedule\":${TAB}\"$got\""
expect 0 "$CLI" plan "$T/u.st" --batch 4 "${pose[@]}" && has out "step schedule: " && has out "measured faster than"
expect 0 "$CLI" plan "$T/u.st" --batch 4 "${pose[@]}" --json && has out "\"step_schedule\":${TAB}\"" \
    && ! grep -q "\"step_schedule\":${TAB}\"auto\"" "$T/out" || fail "plan --json: no step schedule recorded"
# not timed, or 3 rows on 2 threads: none
expect 0 "$CLI" plan "$T/u.st" --batch 4 "${pose[@]}" --no-measure && ! grep -q "step schedule" "$T/out" "$T/err" \
    || fail "--no-measure recorded a step schedule"
expect 0 "$CLI" plan "$T/u.st" --batch 4 "${pose[@]}" --no-measure --json && has out "\"step_schedule\":${TAB}\"auto\""
expect 0 "$CLI" compress "$T/u.st" -o "$T/c3.st" --batch 3 "${pose[@]}" && ! grep -q "step schedule" "$T/err" \
    || fail "a step schedule timed at 3 rows on 2 threads"
expect 0 "$CLI" info "$T/c3.st" && has out "step sched:   none planned"

# hand-made files
set_meta "$T/u.st" "$T/b.st" step_schedule blocks
expect 0 "$CLI" info "$T/b.st" && has out "step sched:   blocks (planned"
set_meta "$T/u.st" "$T/bad.st" step_schedule diagonal
expect 1 "$CLI" info "$T/bad.st" && has err "$T/bad.st" && has err "\"step_schedule\" is \"diagonal\", not \"blocks\" or \"rows\""

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all step schedule planning CLI tests passed"
