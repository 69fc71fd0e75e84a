#!/usr/bin/env bash
# The one data layer and certified budgets from the command line: labelled text (train, eval,
# compress, finetune), a language model evaluated on text and on token-id .npy, bad input with its
# exit status and a message naming the file and line, and `compress --finetune` on a tiny task.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

# ---------------------------------------------------------------- labelled text
"$PY" - "$T" <<'PYEOF'
import random, sys
d = sys.argv[1]
random.seed(1)
pos = ["good", "great", "fine", "nice"]; neg = ["bad", "awful", "sad", "poor"]; fill = ["the", "a", "film", "is", "so"]
def line():
    lab = random.choice(["pos", "neg"])
    w = [random.choice(fill) for _ in range(random.randint(1, 4))]
    w.insert(random.randint(0, len(w)), random.choice(pos if lab == "pos" else neg))
    return lab + "\t" + " ".join(w)
for name, n in [("train.tsv", 300), ("val.tsv", 120)]:
    open(f"{d}/{name}", "w").write("\n".join(line() for _ in range(n)) + "\n")
open(f"{d}/corpus.txt", "w").write("the cat sat on the mat\nthe dog sat on the log\n" * 20)
PYEOF
expect 0 "$CLI" train --task classify --train "$T/train.tsv" --valid "$T/val.tsv" --hidden 16 --embed 8 \
    --epochs 6 --lr 0.01 --quiet -o "$T/clf.st" && has out "wrote"
expect 0 "$CLI" eval "$T/clf.st" --labelled "$T/val.tsv" --json && has out '"sequences": 120'
expect 0 "$CLI" eval "$T/clf.st" --data "$T/val.tsv" && has out "(120 sequences)"
printf 'pos\tgood film\nmaybe\tgood\n' > "$T/unknown.tsv"
expect 1 "$CLI" eval "$T/clf.st" --data "$T/unknown.tsv" && has err "unknown.tsv:2: label 'maybe' is not one of the model's 2 classes"
printf 'pos\tgood film\nneg bad film\n' > "$T/notab.tsv"
expect 1 "$CLI" eval "$T/clf.st" --data "$T/notab.tsv" && has err "notab.tsv:2: no tab"
printf 'pos\tgood film\nneg\t   \n' > "$T/empty.tsv"
expect 1 "$CLI" eval "$T/clf.st" --data "$T/empty.tsv" && has err "empty.tsv:2: empty text"
expect 1 "$CLI" train --task classify --train "$T/empty.tsv" --quiet -o "$T/x.st" && has err "empty.tsv:2: empty text"
expect 1 "$CLI" eval "$T/clf.st" --text "$T/val.tsv" && has err "a text corpus is for a language model"
expect 0 "$CLI" finetune "$T/clf.st" --train-labelled "$T/train.tsv" --epochs 1 --quiet -o "$T/clf_ft.st"
expect 0 "$CLI" eval "$T/clf_ft.st" --labelled "$T/val.tsv"

# ---------------------------------------------------------------- certified compress, with and without fine-tuning
pose=(--cache-bytes 1000 --bandwidth 10 --flops 10 --no-measure --quiet)
expect 0 "$CLI" compress "$T/clf.st" -o "$T/c.st" --labelled "$T/val.tsv" --max-loss 5 "${pose[@]}" &&
    has out "certified on 60 held-back sequences the search never saw" && has out "search data (60 sequences)"
expect 0 "$CLI" compress "$T/clf.st" -o "$T/c.st" --labelled "$T/val.tsv" --certify-labelled "$T/train.tsv" \
    --max-loss 5 --confidence 0.95 "${pose[@]}" --json &&
    has out '"count":	300' && has out '"confidence":	0.95' && has out '"search_count":	120'
expect 0 "$CLI" compress "$T/clf.st" -o "$T/cf.st" --labelled "$T/val.tsv" --max-loss 5 "${pose[@]}" \
    --finetune --train-labelled "$T/train.tsv" --finetune-epochs 1 &&
    has out "(nor the fine-tuning)" && has out "final fine-tune" && has out "wrote"
expect 0 "$CLI" eval "$T/cf.st" --labelled "$T/val.tsv"
expect 2 "$CLI" compress "$T/clf.st" -o "$T/cf.st" --labelled "$T/val.tsv" --finetune "${pose[@]}" &&
    has err "--finetune needs --train"
expect 2 "$CLI" compress "$T/clf.st" -o "$T/cf.st" --labelled "$T/val.tsv" --confidence 1.5 "${pose[@]}"
expect 2 "$CLI" plan "$T/clf.st" --certify-labelled "$T/val.tsv" "${pose[@]}" && has err "needs validation data"

# ---------------------------------------------------------------- language model: text and token ids
expect 0 "$CLI" train --task lm --train "$T/corpus.txt" --hidden 8 --embed 4 --epochs 1 --batch 2 --bptt 5 \
    --quiet -o "$T/lm.st"
expect 0 "$CLI" eval "$T/lm.st" --text "$T/corpus.txt" --json && has out '"tokens": 279'
"$PY" -c "
import numpy as np, sys
np.save('$T/ids.npy', np.arange(40, dtype=np.int64).reshape(4, 10) % 5)
np.save('$T/f.npy', np.zeros((4, 10), dtype=np.float32))"
expect 0 "$CLI" eval "$T/lm.st" --data "$T/ids.npy" --json && has out '"tokens": 39'
expect 1 "$CLI" eval "$T/lm.st" --data "$T/f.npy" && has err "integer token ids"
expect 2 "$CLI" eval "$T/lm.st" --data "$T/ids.npy" --labels "$T/ids.npy"
expect 0 "$CLI" plan "$T/lm.st" --text "$T/corpus.txt" --max-loss 0.5 "${pose[@]}" &&
    has out "held-back tokens the search never saw"
expect 0 "$CLI" compress "$T/lm.st" -o "$T/lmf.st" --text "$T/corpus.txt" --max-loss 0.5 "${pose[@]}" \
    --finetune --train-text "$T/corpus.txt" --batch-train 2 && has out "(nor the fine-tuning)"
expect 0 "$CLI" eval "$T/lmf.st" --text "$T/corpus.txt"

if [ "$failures" -gt 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "test_cli_data: all passed"
