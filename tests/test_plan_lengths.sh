#!/usr/bin/env bash
# The planner judges sequences with their lengths exactly as `fastlstm eval` does: on labelled text
# (each line's length, left-padded rows) and on a .npy set with --lengths (valid steps first, the
# padding filled with noise so that reading it would change the answers), the dense model's accuracy
# the planner records (search data, and certify data) equals eval's; and compress --finetune
# fine-tunes at 1e-4 unless --lr says otherwise.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

"$PY" - "$T" <<'PYEOF'
import random, sys
import numpy as np
d = sys.argv[1]
random.seed(4)
pos = ["good", "great", "fine", "nice"]; neg = ["bad", "awful", "sad", "poor"]
fill = ["the", "a", "film", "is", "so", "very", "and", "plot"]
def line():
    lab = random.choice(["pos", "neg"])
    w = [random.choice(fill) for _ in range(random.randint(0, 11))]  # 1 to 12 words
    w.insert(random.randint(0, len(w)), random.choice(pos if lab == "pos" else neg))
    return lab + "\t" + " ".join(w)
for name, n in [("train.tsv", 200), ("val.tsv", 150), ("cert.tsv", 90)]:
    open(f"{d}/{name}", "w").write("\n".join(line() for _ in range(n)) + "\n")
# features: the class is the sign of the mean of feature 0 over the valid steps; padded steps hold
# loud noise of the opposite sign half the time
rng = np.random.default_rng(7)
for name, n in [("tr", 200), ("va", 150)]:
    T, D = 12, 3
    y = rng.integers(0, 2, n)
    L = rng.integers(1, T + 1, n)
    x = rng.standard_normal((n, T, D)).astype(np.float32) * 0.7
    x[:, :, 0] += np.where(y == 1, 0.4, -0.4)[:, None]
    for i in range(n):
        x[i, L[i]:, :] = rng.standard_normal((T - L[i], D)) * 3.0
    np.save(f"{d}/{name}_x.npy", x)
    np.save(f"{d}/{name}_y.npy", y.astype(np.int64))
    np.save(f"{d}/{name}_len.npy", L.astype(np.int32))
PYEOF

# $1: file with eval's --json, $2: file with plan's --json, $3: plan JSON path ("dense.metric" or
# "certification.dense_metric"): plan's metric (%) == 100 x eval's accuracy
same_metric() {
    "$PY" - "$1" "$2" "$3" <<'PYEOF' || fail "plan's $3 differs from eval's accuracy"
import json, sys
ev = json.load(open(sys.argv[1]))
pl = json.load(open(sys.argv[2]))
a, b = sys.argv[3].split(".")
got, want = pl[a][b], 100 * ev["accuracy"]
print(f"plan {sys.argv[3]} {got:.6f}  eval {want:.6f}")
sys.exit(0 if abs(got - want) < 1e-3 else 1)
PYEOF
}
pose=(--cache-bytes 1000 --bandwidth 10 --flops 10 --no-measure --quiet --max-evals 6)

# ---------------------------------------------------------------- labelled text
expect 0 "$CLI" train --task classify --train "$T/train.tsv" --hidden 12 --embed 6 --epochs 3 --lr 0.01 \
    --quiet -o "$T/clf.st"
expect 0 "$CLI" eval "$T/clf.st" --labelled "$T/val.tsv" --json && cp "$T/out" "$T/ev_val.json"
expect 0 "$CLI" eval "$T/clf.st" --labelled "$T/cert.tsv" --json && cp "$T/out" "$T/ev_cert.json"
expect 0 "$CLI" plan "$T/clf.st" --labelled "$T/val.tsv" --certify-fraction 0 --max-loss 50 "${pose[@]}" --json &&
    cp "$T/out" "$T/pl.json" && same_metric "$T/ev_val.json" "$T/pl.json" dense.metric
expect 0 "$CLI" plan "$T/clf.st" --labelled "$T/val.tsv" --certify-labelled "$T/cert.tsv" --max-loss 50 \
    "${pose[@]}" --json && cp "$T/out" "$T/pl.json" && same_metric "$T/ev_cert.json" "$T/pl.json" \
    certification.dense_metric && same_metric "$T/ev_val.json" "$T/pl.json" dense.metric

# ---------------------------------------------------------------- features with --lengths
expect 0 "$CLI" train --task classify --train "$T/tr_x.npy" --train-labels "$T/tr_y.npy" \
    --train-lengths "$T/tr_len.npy" --hidden 8 --epochs 3 --lr 0.02 --quiet -o "$T/f.st"
expect 0 "$CLI" eval "$T/f.st" --data "$T/va_x.npy" --labels "$T/va_y.npy" --lengths "$T/va_len.npy" --json &&
    cp "$T/out" "$T/ev_f.json"
expect 0 "$CLI" plan "$T/f.st" --data "$T/va_x.npy" --labels "$T/va_y.npy" --lengths "$T/va_len.npy" \
    --certify-fraction 0 --max-loss 50 "${pose[@]}" --json && cp "$T/out" "$T/pl.json" &&
    same_metric "$T/ev_f.json" "$T/pl.json" dense.metric
# the whole set certified on itself (the split keeps each sequence's length): search + certify
# parts judged as eval judges the whole
expect 0 "$CLI" plan "$T/f.st" --data "$T/va_x.npy" --labels "$T/va_y.npy" --lengths "$T/va_len.npy" \
    --certify-data "$T/va_x.npy" --certify-labels "$T/va_y.npy" --certify-lengths "$T/va_len.npy" \
    --max-loss 50 "${pose[@]}" --json && cp "$T/out" "$T/pl.json" &&
    same_metric "$T/ev_f.json" "$T/pl.json" certification.dense_metric
expect 0 "$CLI" plan "$T/f.st" --data "$T/va_x.npy" --labels "$T/va_y.npy" --lengths "$T/va_len.npy" \
    --max-loss 50 "${pose[@]}" --json && cp "$T/out" "$T/pl.json" &&
    "$PY" - "$T/ev_f.json" "$T/pl.json" <<'PYEOF' || fail "search and certify parts do not add up to eval's accuracy"
import json, sys
ev, pl = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
c = pl["certification"]
ns, nc = c["search_count"], c["count"]
right = pl["dense"]["metric"] * ns / 100 + c["dense_metric"] * nc / 100
print(f"search {ns} + certify {nc}: {right:.3f} right, eval {ev['accuracy'] * ev['sequences']:.3f}")
sys.exit(0 if ns + nc == ev["sequences"] and abs(right - ev["accuracy"] * ev["sequences"]) < 1e-3 else 1)
PYEOF
"$PY" -c "import numpy as np; np.save('$T/bad_len.npy', np.full(150, 13, np.int32))"
expect 1 "$CLI" plan "$T/f.st" --data "$T/va_x.npy" --labels "$T/va_y.npy" --lengths "$T/bad_len.npy" \
    "${pose[@]}" && has err "length 13"
# without labels (judged against the dense model's own predictions) the lengths are read too
expect 0 "$CLI" plan "$T/f.st" --data "$T/va_x.npy" --lengths "$T/va_len.npy" --certify-fraction 0 "${pose[@]}"
expect 1 "$CLI" plan "$T/f.st" --data "$T/va_x.npy" --lengths "$T/bad_len.npy" --certify-fraction 0 "${pose[@]}" &&
    has err "length 13"

# ---------------------------------------------------------------- the fine-tuning rate
expect 0 "$CLI" plan "$T/clf.st" --labelled "$T/val.tsv" --max-loss 50 "${pose[@]}" --json \
    --finetune --train-labelled "$T/train.tsv" --finetune-probe 0.1 && has out '"finetune_lr":	0.0001'
expect 0 "$CLI" plan "$T/clf.st" --labelled "$T/val.tsv" --max-loss 50 "${pose[@]}" --json \
    --finetune --train-labelled "$T/train.tsv" --finetune-probe 0.1 --lr 0.003 && has out '"finetune_lr":	0.003'
expect 0 "$CLI" plan "$T/clf.st" --labelled "$T/val.tsv" --max-loss 50 "${pose[@]}" \
    --finetune --train-labelled "$T/train.tsv" --finetune-probe 0.1 && has out "fine-tuning (Adam, lr 0.0001)"
expect 0 "$CLI" plan --help && has out "default 1e-4"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "test_plan_lengths: all passed"
