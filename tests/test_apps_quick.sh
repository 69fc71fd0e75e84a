#!/usr/bin/env bash
# bench/apps/run.sh --quick end to end on tiny subsets (issue 12): every application's data, PyTorch
# baseline, fastlstm train / compress / eval and the timing of every system, then the report; checks
# that the report is produced and well-formed (the QUICK label, every application a row with every
# column, the goals, a section per application) and that a rerun resumes from the cache instead of
# training again. No timing assertions. Peers that are unavailable here (onnxruntime-node not in the
# cache, no oneDNN) are reported as such by run.sh and the test says SKIP for them; an application whose
# data cannot be made here (a package missing, npm unreachable) must still have its row ("not run").
# Slow (minutes): label `apps`; the sanitizer build skips it (exit 77).
# Environment (set by CTest): FL_CLI, FL_BINARY_DIR; FL_APPS_QUICK_DATA: where the tiny data sets are
# made once (default ~/.cache/fastlstm/apps-quick, tools/apps_data.sh --quick's own, so npm is asked for sentiment@5.0.2 once).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if grep -qs '^FL_SANITIZE:BOOL=ON' "${FL_BINARY_DIR:-.}/CMakeCache.txt"; then
    echo "SKIP: the apps smoke run is not repeated under the sanitizers (release build only)"
    exit 77
fi
. "$(dirname "$0")/cli_lib.sh"
PY=/usr/bin/python3
DATA=${FL_APPS_QUICK_DATA:-$HOME/.cache/fastlstm/apps-quick}
RUN=(bash "$ROOT/bench/apps/run.sh" --quick --cache "$T/cache" --data "$DATA" --out "$T/apps.md")

expect 2 "${RUN[@]}" --only nope && has err "no such application"
expect 2 "${RUN[@]}" --bogus && has err "unknown option"

timeout 900 "${RUN[@]}" >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 124 ] && fail "run.sh --quick hung (killed after 900 s)"
[ -s "$T/apps.md" ] || { fail "run.sh --quick wrote no report (exit $rc)"; tail -30 "$T/cache/run/log.txt"; exit 1; }
cat "$T/cache/run/peers.txt"
grep -q 'onnxruntime: ok' "$T/cache/run/peers.txt" || echo "SKIP: ONNX Runtime timing (see peers line above)"
grep -q 'onednn: ok' "$T/cache/run/peers.txt" || echo "SKIP: oneDNN timing (see peers line above)"
grep -q 'torch: ok' "$T/cache/run/peers.txt" || echo "SKIP: PyTorch baselines and timing (see peers line above)"
cp "$T/apps.md" "$T/report"
has report "QUICK SMOKE RUN"
has report "These figures mean nothing"

# Well-formed: the summary table has every column and a row of that many cells for each application;
# an application with data has figures, not "not run"; six goals; a section per application.
"$PY" - "$T/apps.md" "$DATA" <<'PYEOF' || fail "report not well-formed"
import os, sys
sys.path.insert(0, os.path.join(os.environ.get("FL_SOURCE_DIR", "."), "bench", "apps"))
text = open(sys.argv[1]).read().splitlines()
cols = ["app", "metric", "PyTorch-trained", "fastlstm dense", "compressed", "within budget", "b1 compressed ms",
        "b1 PyTorch ms", "b1 int8 ms", "b1 ORT ms", "b1 oneDNN ms", "x PyTorch", "x fastest float peer", "x int8",
        "b16 x PyTorch"]
bad = []
head = [l for l in text if l.startswith("| app |")]
if len(head) != 1 or [c.strip() for c in head[0].strip("|").split("|")] != cols:
    bad.append("summary header: %r" % head)
data = {"fmnist": "fmnist", "wordlm": "kjv", "sentiment": "sentiment", "speech": "speech", "babi": "babi", "charlm": "kjv"}
for app, d in data.items():
    rows = [l for l in text if l.startswith("| %s |" % app)]
    if len(rows) != 1:
        bad.append("%s: %d summary rows" % (app, len(rows)))
        continue
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    if len(cells) != len(cols):
        bad.append("%s: %d cells, want %d" % (app, len(cells), len(cols)))
    have = os.path.exists(os.path.join(sys.argv[2], d, ".done"))
    if have and ("not run" in cells or cells[3] == "n/a" or cells[4] == "n/a" or cells[6] == "n/a"):
        bad.append("%s: data present but no dense/compressed figures: %s" % (app, cells))
    if not have:
        print("SKIP: %s: no data here (tools/apps_data.sh could not make it)" % app)
geo = [l for l in text if l.startswith("| **geomean** |")]
if len(geo) != 1 or len(geo[0].strip("|").split("|")) != len(cols):
    bad.append("geomean row: %r" % geo)
goals = [l for l in text if l.startswith("- ") and ("**met**" in l or "**MISSED**" in l or "**not measured**" in l)
         or l.startswith("- compressed >=")]
if len(goals) < 6:
    bad.append("%d goal lines, want 6" % len(goals))
for title in ("Image rows", "Word language model", "Sentiment", "Speech", "Question answering", "Character language model"):
    if not any(l.startswith("## " + title) for l in text):
        bad.append("no section " + title)
for b in bad:
    print("report: " + b)
sys.exit(1 if bad else 0)
PYEOF

# The timing states the OpenBLAS kernels every side ran (run.sh exports one OPENBLAS_CORETYPE for all).
grep -q '^OpenBLAS kernels (`OPENBLAS_CORETYPE`' "$T/apps.md" || fail "the report does not state the OpenBLAS kernels"
grep -q '^blas-core 0 ' "$T/cache/run/fmnist/timing.txt" || fail "fmnist's timing.txt does not record the OpenBLAS core"

# Resume: a second run finds every step done (no training again) and writes the same rows.
lines=$(wc -l <"$T/cache/run/log.txt")
expect 0 timeout 300 "${RUN[@]}" --only fmnist || true
tail -n +"$((lines + 1))" "$T/cache/run/log.txt" >"$T/log2"
grep -q "fastlstm train" "$T/log2" && fail "the rerun trained fmnist again instead of resuming"
[ -s "$T/cache/run/fmnist/timing.txt" ] || fail "no fmnist timing.txt"
grep -q '^| fmnist |' "$T/apps.md" || fail "the rerun's report lost the fmnist row"
grep -q '^| charlm |' "$T/apps.md" || fail "the rerun's report lost the charlm row"
# A report while another run is still at work: an application trained but not yet compressed (its
# compress.json and what follows missing) is reported as such, not a crash.
cp -r "$T/cache/run" "$T/partial"
rm -f "$T/partial/fmnist/compress.json" "$T/partial/fmnist/comp_"* "$T/partial/fmnist/timing.txt"
expect 0 "$PY" "$ROOT/bench/apps/report.py" --run "$T/partial" --out "$T/partial.md" ||
  fail "report.py failed on a cache with fmnist not yet compressed"
grep -q '^| fmnist |' "$T/partial.md" || fail "the partial report has no fmnist row"
grep -q '^| charlm |' "$T/partial.md" || fail "the partial report lost the charlm row"
[ $failures -eq 0 ] && echo "OK" || { echo "$failures failure(s)"; exit 1; }
