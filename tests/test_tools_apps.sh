#!/usr/bin/env bash
# The application data tools (tools/*.py of issue 12) and the PyTorch baselines (bench/apps/torch_train.py):
#  - tests/test_tools_apps.py: converters on tiny inputs (sizes, formats, disjoint splits, same seed ->
#    same bytes), bAbI answers re-derived by an independent simulator, features against a direct
#    computation, clear errors for corrupt or missing inputs. Parts needing espeak-ng or bible-kjv
#    print SKIP when those packages are absent (scripts/setup.sh installs them).
#  - torch_train.py on tiny labelled text and a tiny corpus (one epoch), exported to safetensors, which
#    `fastlstm info` must read; apps_data.sh's clear error for a bad option.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with torch + numpy.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLI=${FL_CLI:-}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

# expect_slow RC CMD...: expect with 300 s instead of 60 (PyTorch training on a machine shared by builds)
expect_slow() {
    local want=$1; shift
    timeout 300 "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq 124 ]; then fail "'$*' hung (killed after 300 s)"; return 1; fi
    if [ "$rc" -ne "$want" ]; then fail "'$*' exited $rc, want $want"; return 1; fi
    return 0
}

"$PY" -c 'import numpy' || { echo "FAIL: $PY lacks numpy"; exit 1; }
timeout 300 "$PY" "$ROOT/tests/test_tools_apps.py" "$T" || { echo "FAIL: test_tools_apps.py"; failures=$((failures + 1)); }

# ---------------------------------------------------------------- PyTorch baselines, exported
if "$PY" -c 'import torch' 2>/dev/null; then
    TT=("$PY" "$ROOT/bench/apps/torch_train.py" --threads 1 --quiet --epochs 1 --hidden 8 --embed 8)
    expect 0 "$PY" "$ROOT/tools/babi_gen.py" --questions 20 "$T/babi" || true
    expect_slow 0 "${TT[@]}" --app babi --data "$T/babi" --limit 40 --hidden-sweep 4,8 --export "$T/babi.st" \
        --json "$T/sweep.json" && has out "<- smallest within noise of the best"
    printf 'Ge1:%d In the beginning God created the heaven and the earth, verse %d.\n' $(seq 1 60 | sed 'p') >"$T/kjv.txt"
    expect 0 "$PY" "$ROOT/tools/kjv.py" --src "$T/kjv.txt" "$T/kjv" || true
    expect_slow 0 "${TT[@]}" --app word-lm --data "$T/kjv/word" --batch 4 --bptt 5 --export "$T/lm.st" &&
        has out "word-lm hidden 8: test perplexity"
    "$PY" - "$T" <<'EOF' || { echo "FAIL: exported metadata"; failures=$((failures + 1)); }
import json, struct, sys
t = sys.argv[1]
def meta(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]
m = meta(t + "/babi.st")
tok = json.loads(m["tokenizer"])
r = json.load(open(t + "/sweep.json"))
assert [s["hidden"] for s in r["sweep"]] == [4, 8] and r["chosen_hidden"] in (4, 8), r
assert m["head"] == "last_step" and m["hidden"] == str(r["chosen_hidden"]) and tok["type"] == "word" and tok["tokens"][0] == "<unk>", m
assert set(json.loads(m["labels"])) <= {"bathroom", "bedroom", "garden", "hallway", "kitchen", "office", "yes", "no"}
m = meta(t + "/lm.st")
tok = json.loads(m["tokenizer"])
assert m["head"] == "per_step" and int(m["head_out"]) == len(tok["tokens"]) == int(m["vocab"]), m
assert "<eos>" in tok["tokens"] and "god" in tok["tokens"], tok
EOF
    if [ -n "$CLI" ]; then
        for m in babi lm; do expect 0 "$CLI" info "$T/$m.st" && has out "hidden"; done
    fi
    expect_slow 1 "${TT[@]}" --app babi --data "$T/nowhere" && has err "no such directory"
    printf '1\tgood\nnolabel\n' >"$T/babi/train.tsv"
    expect_slow 1 "${TT[@]}" --app babi --data "$T/babi" && has err "train.tsv line 2: expected \`label<TAB>text\`"
else
    echo "SKIP: torch_train.py ($PY has no torch)"
fi

# ---------------------------------------------------------------- the driver's argument checks
expect 2 bash "$ROOT/tools/apps_data.sh" --bogus && has err "unknown option --bogus"
expect 0 bash "$ROOT/tools/apps_data.sh" --help && has out "--quick"
mkdir -p "$T/bin" && ln -s "$(command -v dirname)" "$T/bin/dirname"  # a PATH without bible, espeak-ng, npm
if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    expect 1 env PATH="$T/bin" "$BASH" "$ROOT/tools/apps_data.sh" --quick "$T/nodeps" &&
        has err "bible is missing: apt-get install -y bible-kjv"
fi

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "test_tools_apps: ok"
