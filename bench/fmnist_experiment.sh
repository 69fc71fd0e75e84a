#!/usr/bin/env bash
# Fashion-MNIST read row by row (28 steps x 28 pixels), hidden 128: dense model, the same model
# SVD-decomposed at a rank with >= 4x fewer LSTM flops (before and after fine-tuning), and the
# decomposed architecture trained from scratch. Test accuracy of each.
#   bash bench/fmnist_experiment.sh [WORKDIR] [EPOCHS]
# Needs: Debian package dataset-fashion-mnist, a release build in build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/fastlstm-fmnist}
epochs=${2:-12}
rank=16   # W_ih (512x28) and W_hh (512x128) at rank 16: 2*16*(540+640) = 37,760 vs 159,744 flops/step
fl=${FL_CLI:-"$root/build/fastlstm"}
mkdir -p "$work"
# 55,000 train / 5,000 validation (last of the official training set) / 10,000 test: the
# validation set drives learning-rate decay; the test set is only read by the final eval.
[ -f "$work/valid_x.npy" ] || /usr/bin/python3 "$root/tools/fashion_mnist.py" --valid 5000 "$work"
data=(--train "$work/train_x.npy" --train-labels "$work/train_y.npy"
      --valid "$work/valid_x.npy" --valid-labels "$work/valid_y.npy")
common=(--batch 64 --lr 0.002 --lr-decay 0.5 --patience 1 --threads 1 --seed 1)
export OPENBLAS_NUM_THREADS=1

echo "== dense, $epochs epochs"
"$fl" train --task classify "${data[@]}" --hidden 128 --epochs "$epochs" "${common[@]}" -o "$work/dense.st"
"$fl" info "$work/dense.st" | tail -3
echo "== SVD rank $rank of the trained dense model, before fine-tuning"
"$fl" decompose "$work/dense.st" -o "$work/svd.st" --method svd --rank "$rank"
echo "== fine-tuned 3 epochs"
"$fl" finetune "$work/svd.st" "${data[@]}" --epochs 3 --batch 64 --lr 0.001 --threads 1 --seed 1 -o "$work/svd_ft.st"
echo "== SVD rank $rank trained from scratch, $epochs epochs"
"$fl" train --task classify "${data[@]}" --hidden 128 --decompose "svd:$rank" --epochs "$epochs" "${common[@]}" -o "$work/svd_scratch.st"
echo "== test accuracy"
for m in dense svd svd_ft svd_scratch; do
  printf '%-12s ' "$m"; "$fl" eval "$work/$m.st" --data "$work/test_x.npy" --labels "$work/test_y.npy" | tr '\n' ' '; echo
done
