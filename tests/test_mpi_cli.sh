#!/usr/bin/env bash
# `mpirun -np 2 fastlstm train|finetune` (data-parallel, CTest label mpi) against the same command in
# one process: the saved weights must agree (read back by an independent Python safetensors reader),
# only rank 0 reports and writes, the log names the bytes allreduced per step, and a checkpointed,
# resumed distributed run ends where one uninterrupted single-process run does.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
. "$(dirname "$0")/dist_lib.sh"
mpi_test_setup mpi_cli

# Data: 61 sequences (T=6, D=5), labels = sign of the sum; a small text corpus.
"$PY" - "$T" <<'EOF' || { echo "FAIL: cannot write test data"; exit 1; }
import sys, numpy as np
r = np.random.default_rng(3)
x = r.standard_normal((61, 6, 5)).astype(np.float32)
np.save(sys.argv[1] + '/x.npy', x)
np.save(sys.argv[1] + '/y.npy', (x.sum(axis=(1, 2)) > 0).astype(np.int32))
w = 'the cat sat on a mat and the dog ran to the red house'.split()
open(sys.argv[1] + '/c.txt', 'w').write('\n'.join(' '.join(w[(i * 7 + j * 3) % len(w)] for j in range(9)) for i in range(80)))
EOF

# ---------------------------------------------------------------- classifier, odd batch 9 (4 + 5)
COMMON=(--task classify --train "$T/x.npy" --train-labels "$T/y.npy" --hidden 16 --epochs 2 --batch 9
        --optim sgd --lr 0.5 --momentum 0.9)
if expect 0 "${MPI2[@]}" "$CLI" train "${COMMON[@]}" -o "$T/d2.st"; then
    grep -q "data-parallel over 2 MPI ranks" "$T/err" || fail "no data-parallel log line"
    grep -q "each step allreduces [0-9]* bytes" "$T/err" || fail "no bytes-per-step log line"
    [ "$(grep -c '^wrote ' "$T/out")" -eq 1 ] || fail "want exactly one 'wrote' line (rank 0 only)"
fi
expect 0 "$CLI" train "${COMMON[@]}" -o "$T/d1.st" && same "$T/d2.st" "$T/d1.st" 1e-5

# SVD: fewer bytes per step than dense.
if expect 0 "${MPI2[@]}" "$CLI" train "${COMMON[@]}" --decompose svd:2 -o "$T/s2.st"; then
    dense=$(grep -o "allreduces [0-9]*" "$T/err" | head -1)
    cp "$T/err" "$T/svd_err"
    expect 0 "${MPI2[@]}" "$CLI" train "${COMMON[@]}" --max-steps 1 -o "$T/tmp.st"
    full=$(grep -o "allreduces [0-9]*" "$T/err" | head -1)
    echo "bytes per step: dense ${full#allreduces }, SVD rank 2 ${dense#allreduces }"
    [ "${dense#allreduces }" -lt "${full#allreduces }" ] || fail "SVD should allreduce fewer bytes than dense"
fi
expect 0 "$CLI" train "${COMMON[@]}" --decompose svd:2 -o "$T/s1.st" && same "$T/s2.st" "$T/s1.st" 1e-5

# finetune of the SVD model, factors only.
expect 0 "${MPI2[@]}" "$CLI" finetune "$T/s1.st" --train "$T/x.npy" --train-labels "$T/y.npy" --freeze-dense --epochs 1 \
    --batch 9 --optim sgd --lr 0.5 -o "$T/f2.st"
expect 0 "$CLI" finetune "$T/s1.st" --train "$T/x.npy" --train-labels "$T/y.npy" --freeze-dense --epochs 1 \
    --batch 9 --optim sgd --lr 0.5 -o "$T/f1.st" && same "$T/f2.st" "$T/f1.st" 1e-5

# ---------------------------------------------------------------- language model, stop + resume
LM=(--task lm --train "$T/c.txt" --hidden 16 --embed 8 --epochs 1 --batch 3 --bptt 5 --optim sgd --lr 1)
expect 0 "${MPI2[@]}" "$CLI" train "${LM[@]}" --max-steps 6 --checkpoint "$T/lm.ck" -o "$T/l_part.st"
[ -f "$T/lm.ck" ] || fail "no checkpoint written"
expect 0 "${MPI2[@]}" "$CLI" train "${LM[@]}" --max-steps 12 --checkpoint "$T/lm.ck" --resume -o "$T/l2.st"
expect 0 "$CLI" train "${LM[@]}" --max-steps 12 -o "$T/l1.st" && same "$T/l2.st" "$T/l1.st" 1e-5

# A failure on the ranks ends the job with a nonzero status instead of hanging.
if expect 1 "${MPI2[@]}" "$CLI" train --task classify --train "$T/missing.npy" --train-labels "$T/y.npy" -o "$T/z.st"; then
    grep -q "missing.npy" "$T/err" || fail "the error does not name the file"
fi

# Ranks started with different --seed values would shuffle differently and read overlapping data:
# refused with an error that names both seeds (a wrapper gives rank r the seed 7 + 100 r).
cat > "$T/per_rank_seed.sh" <<EOF
#!/usr/bin/env bash
exec "$CLI" "\$@" --seed \$((7 + 100 * \${OMPI_COMM_WORLD_RANK:-0}))
EOF
chmod +x "$T/per_rank_seed.sh"
if expect 1 "${MPI2[@]}" "$T/per_rank_seed.sh" train "${COMMON[@]}" -o "$T/seed.st"; then
    grep -q "ranks disagree on the seed (rank 0 has 7, another rank 107)" "$T/err" ||
        fail "the seed error does not name both seeds: $(cat "$T/err")"
    [ ! -e "$T/seed.st" ] || fail "a model was written although the ranks disagree"
fi

if [ "$failures" -gt 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all MPI CLI checks passed"
