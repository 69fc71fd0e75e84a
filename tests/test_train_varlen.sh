#!/usr/bin/env bash
# Masked variable-length training from the command line: a .npy classification set with
# --train-lengths / --valid-lengths / --lengths (valid steps first). Two sets that differ only in
# their padding train to the same model and evaluate the same; bad lengths are refused with a
# message naming the file. Environment (set by CTest): FL_CLI, FL_PYTHON (numpy).
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

"$PY" - "$T" <<'PYEOF'
import sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
N, T, D = 64, 9, 3
lens = rng.integers(1, T + 1, N).astype(np.int64)
x = rng.standard_normal((N, T, D)).astype(np.float32)
y = np.array([int(x[i, lens[i] - 1, 0] > 0) for i in range(N)], dtype=np.int32)
x2 = x.copy()
for i in range(N):
    x2[i, lens[i]:] = 7.0  # other padding
np.save(f"{d}/x.npy", x); np.save(f"{d}/x2.npy", x2); np.save(f"{d}/y.npy", y)
np.save(f"{d}/len.npy", lens)
np.save(f"{d}/len_short.npy", lens[:-1])
bad = lens.copy(); bad[5] = 0; np.save(f"{d}/len_zero.npy", bad)
bad = lens.copy(); bad[7] = T + 1; np.save(f"{d}/len_long.npy", bad)
np.save(f"{d}/len_float.npy", lens.astype(np.float32))
PYEOF

common=(--task classify --hidden 8 --epochs 2 --batch 16 --lr 0.01 --quiet)
expect 0 "$CLI" train "${common[@]}" --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy" \
    --valid "$T/x.npy" --valid-labels "$T/y.npy" --valid-lengths "$T/len.npy" -o "$T/a.st"
expect 0 "$CLI" train "${common[@]}" --train "$T/x2.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy" \
    --valid "$T/x2.npy" --valid-labels "$T/y.npy" --valid-lengths "$T/len.npy" -o "$T/b.st"
expect 0 "$CLI" eval "$T/a.st" --data "$T/x.npy" --labels "$T/y.npy" --lengths "$T/len.npy" && cp "$T/out" "$T/ea"
expect 0 "$CLI" eval "$T/b.st" --data "$T/x2.npy" --labels "$T/y.npy" --lengths "$T/len.npy" && cp "$T/out" "$T/eb"
cmp -s "$T/ea" "$T/eb" || fail "padding changed the trained model: $(cat "$T/ea") vs $(cat "$T/eb")"
# without the lengths the padding is read as data: a different loss
expect 0 "$CLI" eval "$T/b.st" --data "$T/x2.npy" --labels "$T/y.npy" && cp "$T/out" "$T/ec"
cmp -s "$T/eb" "$T/ec" && fail "eval without --lengths gave the masked result"
expect 0 "$CLI" finetune "$T/a.st" --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy" \
    --epochs 1 --quiet -o "$T/a_ft.st"

expect 1 "$CLI" train "${common[@]}" --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len_short.npy" \
    -o "$T/x.st" && has err "len_short.npy has 63 lengths but the data has 64 sequences"
expect 1 "$CLI" train "${common[@]}" --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len_zero.npy" \
    -o "$T/x.st" && has err "len_zero.npy: length 0 of sequence 5 outside [1, 9]"
expect 1 "$CLI" eval "$T/a.st" --data "$T/x.npy" --labels "$T/y.npy" --lengths "$T/len_long.npy" \
    && has err "length 10 of sequence 7 outside [1, 9]"
expect 1 "$CLI" eval "$T/a.st" --data "$T/x.npy" --labels "$T/y.npy" --lengths "$T/len_float.npy" \
    && has err "len_float.npy: lengths must be a 1-D int32/int64 array"
# ---------------------------------------------------------------- bidirectional
bi=(--task classify --bidirectional --layers 2 --hidden 6 --epochs 2 --batch 16 --lr 0.01 --quiet
    --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy")
expect 0 "$CLI" train "${bi[@]}" -o "$T/bi.st"
expect 0 "$CLI" info "$T/bi.st" && has out "bidirectional"
expect 0 "$CLI" eval "$T/bi.st" --data "$T/x.npy" --labels "$T/y.npy" --lengths "$T/len.npy" && cp "$T/out" "$T/e1"
# checkpoint and resume: 3 steps, then the rest from the checkpoint, equal the straight run
expect 0 "$CLI" train "${bi[@]}" --max-steps 3 --checkpoint "$T/bi.ckpt" -o "$T/bi3.st"
expect 0 "$CLI" train "${bi[@]}" --resume --checkpoint "$T/bi.ckpt" -o "$T/bi_resumed.st"
expect 0 "$CLI" eval "$T/bi_resumed.st" --data "$T/x.npy" --labels "$T/y.npy" --lengths "$T/len.npy" && cp "$T/out" "$T/e2"
cmp -s "$T/e1" "$T/e2" || fail "resumed bidirectional run differs: $(cat "$T/e1") vs $(cat "$T/e2")"
# decomposed (SVD, CP) and fine-tuned in its factors
expect 0 "$CLI" decompose "$T/bi.st" --method svd --rank 2 -o "$T/bi_svd.st"
expect 0 "$CLI" finetune "$T/bi_svd.st" --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy" \
    --epochs 1 --batch 16 --freeze-dense --quiet -o "$T/bi_svd_ft.st"
expect 0 "$CLI" decompose "$T/bi.st" --method cp --rank 2 -o "$T/bi_cp.st"
expect 0 "$CLI" finetune "$T/bi_cp.st" --train "$T/x.npy" --train-labels "$T/y.npy" --epochs 1 --batch 16 --quiet \
    -o "$T/bi_cp_ft.st"
expect 0 "$CLI" eval "$T/bi_cp_ft.st" --data "$T/x.npy" --labels "$T/y.npy" --lengths "$T/len.npy" && has out "(64 sequences)"
printf 'the cat sat on the mat\nthe dog sat on the log\n' > "$T/corpus.txt"
expect 1 "$CLI" train --task lm --bidirectional --train "$T/corpus.txt" --hidden 4 --embed 4 --batch 2 --bptt 3 --quiet \
    -o "$T/x.st" && has err "a bidirectional language model cannot be trained"
# ---------------------------------------------------------------- projections (LSTMP)
expect 0 "$CLI" train --task classify --proj 3 --hidden 6 --layers 2 --epochs 1 --batch 16 --quiet \
    --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy" -o "$T/pj.st"
expect 0 "$CLI" info "$T/pj.st" && has out "projection 3"
expect 0 "$CLI" train --task classify --proj 2 --bidirectional --decompose svd:2 --hidden 6 --epochs 1 --batch 16 --quiet \
    --train "$T/x.npy" --train-labels "$T/y.npy" --train-lengths "$T/len.npy" -o "$T/pj_bi_svd.st"
expect 0 "$CLI" info "$T/pj_bi_svd.st" && has out "weight_hr_l0_reverse"
for i in 1 2 3 4 5 6 7 8; do cat "$T/corpus.txt"; done > "$T/corpus8.txt"
lmp=(--task lm --proj 3 --hidden 6 --embed 4 --batch 2 --bptt 4 --epochs 2 --quiet --train "$T/corpus8.txt")
expect 0 "$CLI" train "${lmp[@]}" -o "$T/lmp.st"
expect 0 "$CLI" eval "$T/lmp.st" --text "$T/corpus8.txt" && cp "$T/out" "$T/l1"
expect 0 "$CLI" train "${lmp[@]}" --max-steps 5 --checkpoint "$T/lmp.ckpt" -o "$T/lmp5.st"
expect 0 "$CLI" train "${lmp[@]}" --resume --checkpoint "$T/lmp.ckpt" -o "$T/lmp_resumed.st"
expect 0 "$CLI" eval "$T/lmp_resumed.st" --text "$T/corpus8.txt" && cp "$T/out" "$T/l2"
cmp -s "$T/l1" "$T/l2" || fail "resumed LSTMP language model differs: $(cat "$T/l1") vs $(cat "$T/l2")"
expect 2 "$CLI" train --task classify --proj 6 --hidden 6 --train "$T/x.npy" --train-labels "$T/y.npy" -o "$T/x.st" \
    && has err "--proj 6 must be below --hidden 6"
[ "$failures" -eq 0 ]
