#!/usr/bin/env bash
# CLI for the schedule of bidirectional layers (plan_threads.c, metadata "bidir_schedule"): info shows
# none / the recorded one (text and JSON); compress with threads planned and timing on writes one of
# the two and plan prints it; a hand-edited bad value or a schedule on a unidirectional model is
# refused naming the file and the key. Nothing is timed against a threshold.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"
TAB=$'\t'

expect 0 "$CLI" init --input 8 --hidden 48 --layers 2 --bidirectional --classes 3 -o "$T/b.st"
expect 0 "$CLI" info "$T/b.st" && has out "bidir sched:  none planned"
expect 0 "$CLI" info "$T/b.st" --json && has out "\"bidir_schedule\":${TAB}\"auto\""

# planned and timed (a posed machine still times the candidates): one of the two, printed and written
pose=(--batch 2 --seq 6 --cache-bytes 33554432 --bandwidth 15 --flops 60 --max-evals 3 --threads 0)
expect 0 "$CLI" compress "$T/b.st" -o "$T/c.st" "${pose[@]}" && has err "bidirectional schedule: " \
    && has err " kept (at "
got=$(grep -o "bidirectional schedule: [a-z]* kept" "$T/err" | awk '{print $3}')
[ "$got" = serial ] || [ "$got" = parallel ] || fail "no schedule kept in the progress"
expect 0 "$CLI" info "$T/c.st" && has out "bidir sched:  $got (planned"
expect 0 "$CLI" info "$T/c.st" --json && has out "\"bidir_schedule\":${TAB}\"$got\""
expect 0 "$CLI" plan "$T/b.st" "${pose[@]}" && has out "bidirectional schedule: " && has out "measured faster than"
expect 0 "$CLI" plan "$T/b.st" "${pose[@]}" --no-measure && has out "bidirectional schedule: parallel (not measured"

# hand-made files
set_meta "$T/b.st" "$T/s.st" bidir_schedule serial
expect 0 "$CLI" info "$T/s.st" && has out "bidir sched:  serial (planned"
set_meta "$T/b.st" "$T/bad.st" bidir_schedule sideways
expect 1 "$CLI" info "$T/bad.st" && has err "$T/bad.st" && has err "\"bidir_schedule\" is \"sideways\""
expect 0 "$CLI" init --input 8 --hidden 16 --layers 1 --classes 3 -o "$T/u.st"
expect 0 "$CLI" info "$T/u.st" && ! grep -q "bidir sched" "$T/out" || fail "a unidirectional model shows a schedule"
set_meta "$T/u.st" "$T/ubad.st" bidir_schedule serial
expect 1 "$CLI" info "$T/ubad.st" && has err "$T/ubad.st" && has err "\"bidir_schedule\" is \"serial\" for a model without"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all bidirectional schedule CLI tests passed"
