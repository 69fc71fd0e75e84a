#!/usr/bin/env bash
# fastlstm demo on a real trained model (issue 12): a tiny Fashion-MNIST subset (--train-size /
# --test-size) trains, compresses and caches under $XDG_CACHE_HOME/fastlstm/demo; the output has the
# dense and compressed test accuracy and a speedup line; a second run uses the cache; --retrain trains
# again; missing or corrupt data gives a clear error naming the Debian package; bad options exit 2.
# No timing assertions. Needs dataset-fashion-mnist (scripts/setup.sh); without it only the error
# paths run (SKIP printed).
# Environment (set by CTest): FL_CLI = the fastlstm binary.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
. "$(dirname "$0")/cli_lib.sh"
export XDG_CACHE_HOME=$T/cache
TINY=(--train-size 64 --test-size 40 --hidden 16 --rank 4 --epochs 1 --reps 3)

# errors first: they need no data
expect 1 "$CLI" demo --data "$T/none" "${TINY[@]}" && has err "apt-get install -y dataset-fashion-mnist" &&
    has err "$T/none/train-images-idx3-ubyte.gz"
mkdir -p "$T/bad"
printf 'not an idx file at all' | gzip >"$T/bad/train-images-idx3-ubyte.gz"
printf 'x' | gzip >"$T/bad/train-labels-idx1-ubyte.gz"
expect 1 "$CLI" demo --data "$T/bad" "${TINY[@]}" && has err "not a gzip'd IDX image file"
expect 2 "$CLI" demo --rank 29 && has err "--rank"
expect 2 "$CLI" demo --train-size 5 && has err "--train-size"
expect 2 "$CLI" demo --bogus && has err "unknown option"
expect 2 "$CLI" demo --retrain --random && has err "--random must come first"
[ -e "$T/cache/fastlstm/demo" ] && [ -n "$(ls "$T/cache/fastlstm/demo")" ] && fail "a failed demo cached a model"

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "SKIP: dataset-fashion-mnist is not installed (bash scripts/setup.sh): the trained demo is not run"
else
    expect 0 "$CLI" demo "${TINY[@]}" && has out "dense model: training 1 epoch(s)" &&
        has out "compressed model: SVD rank 4" && has out "speedup " && has out "test images" &&
        has out "first 64 training and 40 test images"
    grep -Eq '^dense +[0-9.]+% ' "$T/out" || fail "no dense test accuracy line"
    grep -Eq '^compressed r4 +[0-9.]+% ' "$T/out" || fail "no compressed test accuracy line"
    grep -Eq '^speedup [0-9.]+x at batch 1' "$T/out" || fail "no speedup line"
    ls "$T/cache/fastlstm/demo/"*_h16_n64_e1_seed1.safetensors >/dev/null 2>&1 || fail "dense model not cached"
    ls "$T/cache/fastlstm/demo/"*_svd4_ft1.safetensors >/dev/null 2>&1 || fail "compressed model not cached"
    cp "$T/out" "$T/first"
    # a second run: from the cache, the same accuracies
    expect 0 "$CLI" demo "${TINY[@]}" && has out "dense model: cached" && has out "compressed model: cached"
    [ "$(grep -E '^(dense|compressed r[0-9]+) +[0-9]' "$T/first" | awk '{print $1, $2, $3}')" = \
      "$(grep -E '^(dense|compressed r[0-9]+) +[0-9]' "$T/out" | awk '{print $1, $2, $3}')" ] || fail "the cached models score differently"
    expect 0 "$CLI" demo "${TINY[@]}" --retrain && has out "dense model: training"
    # a corrupt cache file is retrained, not trusted
    for f in "$T/cache/fastlstm/demo/"*.safetensors; do printf 'junk' >"$f"; done
    expect 0 "$CLI" demo "${TINY[@]}" && has out "dense model: training"
fi
[ $failures -eq 0 ] && echo "OK" || { echo "$failures failure(s)"; exit 1; }
