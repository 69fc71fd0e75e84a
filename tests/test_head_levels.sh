#!/usr/bin/env bash
# The packed output head (src/core/head.c) against the BLAS head of the reference kernel level: a
# language model (per-step head, 300 words: 4 panels of 64 plus 44), dense and with an SVD head, and a
# sequence classifier (last-step head, 70 classes), each run by `fastlstm run` with FL_KERNELS=ref
# (no packed kernels: BLAS) and with the best level of this CPU (avx2 / avx512: the packed head),
# padded and with --lengths (the per-sequence head), on 1 and 2 threads; the outputs agree within a
# relative error of 1e-4 of the largest output. Skipped where the CPU has no packed level.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

grep -qw avx2 /proc/cpuinfo || { echo "SKIP: no AVX2, so no packed head to compare"; exit 77; }
"$PY" -c 'import numpy' || { echo "FAIL: $PY lacks numpy"; exit 1; }

expect 0 "$CLI" init --vocab 300 --input 16 --hidden 40 --layers 2 --lm --seed 3 -o "$T/lm.st"
expect 0 "$CLI" decompose "$T/lm.st" -o "$T/lm_svd.st" --method dense --head-rank 24
expect 0 "$CLI" init --input 5 --hidden 33 --layers 1 --classes 70 --seed 4 -o "$T/cls.st"
"$PY" - "$T" <<'PYEOF' || fail "input generation failed"
import sys, numpy as np
T = sys.argv[1]
r = np.random.default_rng(0)
np.save(T + "/tok.npy", r.integers(0, 300, size=(5, 9)).astype(np.int32))
np.save(T + "/x.npy", r.standard_normal((5, 9, 5)).astype(np.float32))
np.save(T + "/len.npy", np.array([9, 3, 7, 1, 9], dtype=np.int32))
PYEOF

for case in lm:tok lm_svd:tok cls:x; do
  m=${case%%:*} in=${case##*:}
  for th in 1 2; do
    for lens in "" "--lengths $T/len.npy"; do
      tag="$m th$th${lens:+ lengths}"
      FL_KERNELS=ref expect 0 "$CLI" run "$T/$m.st" --input "$T/$in.npy" --output "$T/ref.npy" --threads $th $lens || continue
      expect 0 "$CLI" run "$T/$m.st" --input "$T/$in.npy" --output "$T/best.npy" --threads $th $lens || continue
      "$PY" - "$T" "$tag" <<'PYEOF' || fail "$tag: the packed head differs from the BLAS head"
import sys, numpy as np
T, tag = sys.argv[1], sys.argv[2]
a, b = np.load(T + "/ref.npy"), np.load(T + "/best.npy")
assert a.shape == b.shape, (a.shape, b.shape)
err = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
print("%s: relative error %.2e" % (tag, err))
sys.exit(0 if err <= 1e-4 and np.abs(a).max() > 0 else 1)
PYEOF
    done
  done
done
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
