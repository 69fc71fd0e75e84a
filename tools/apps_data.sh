#!/usr/bin/env bash
# Prepares the data of the six applications of bench/apps (issue 12) under DIR:
#   DIR/fmnist/     Fashion-MNIST rows: {train,valid,test}_{x,y}.npy (55k/5k/10k; valid = the last 5,000
#                   of the official training set, test = the official test set, untouched)
#   DIR/kjv/word/   King James Bible, word LM: {train,valid,test}.txt, 10k vocabulary   (tools/kjv.py)
#   DIR/kjv/char/   the same verses at character level                                    (tools/kjv.py)
#   DIR/sentiment/  IMDB sentences, 5-fold stratified: fold_<i>/{train,valid,test}.tsv   (tools/sentiment.py)
#   DIR/speech/     SYNTHETIC spoken digits (espeak-ng), MFCC {train,valid,test}_{x,y}.npy (tools/spoken_digits.py)
#   DIR/babi/       SYNTHETIC bAbI-style QA (tasks 1, 2, 6): qaN_{train,test}.txt + {train,valid,test}.tsv
#                   (tools/babi_gen.py)
# Each data set is made once: a directory holding its .done marker is skipped (delete it to redo).
# --quick makes tiny subsets (a few seconds each) for smoke runs; use another DIR for them.
#   bash tools/apps_data.sh [--quick] [DIR]     (default DIR: ~/.cache/fastlstm/apps, or .../apps-quick)
# Needs /usr/bin/python3 with numpy and the Debian packages dataset-fashion-mnist, bible-kjv,
# espeak-ng, npm (bash scripts/setup.sh --deps installs them). Seeds are fixed: reruns give the same bytes.
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
py=${FL_PYTHON:-/usr/bin/python3}
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
case "${1:-}" in -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; -*) echo "apps_data.sh: unknown option $1" >&2; exit 2 ;; esac
[ $# -le 1 ] || { echo "usage: apps_data.sh [--quick] [DIR]" >&2; exit 2; }
default=$HOME/.cache/fastlstm/apps
if [ $quick = 1 ]; then default=$default-quick; fi
dir=${1:-$default}

need() { # need PROGRAM PACKAGE
    command -v "$1" >/dev/null 2>&1 || { echo "apps_data.sh: $1 is missing: apt-get install -y $2 (or bash scripts/setup.sh --deps)" >&2; exit 1; }
}
"$py" -c 'import numpy' 2>/dev/null || { echo "apps_data.sh: $py lacks numpy: apt-get install -y python3-numpy" >&2; exit 1; }

# step NAME COMMAND...: run COMMAND unless DIR/NAME/.done exists; a failed step leaves no marker.
step() {
    local name=$1; shift
    if [ -f "$dir/$name/.done" ]; then echo "== $name: already in $dir/$name"; return; fi
    echo "== $name"
    mkdir -p "$dir/$name"
    "$@"
    date -u +%FT%TZ >"$dir/$name/.done"
}

fm=/usr/share/datasets/fashion-mnist
[ -f "$fm/train-images-idx3-ubyte.gz" ] || { echo "apps_data.sh: $fm is missing: apt-get install -y dataset-fashion-mnist" >&2; exit 1; }
need bible bible-kjv
need espeak-ng espeak-ng
[ -f "$dir/sentiment/sentiment-5.0.2.tgz" ] || need npm npm

if [ $quick = 1 ]; then
    step fmnist "$py" "$tools/fashion_mnist.py" --limit 600 --valid 100 "$dir/fmnist"
    step kjv "$py" "$tools/kjv.py" --limit-per-book 40 --vocab 2000 "$dir/kjv"
    step sentiment "$py" "$tools/sentiment.py" --limit 50 "$dir/sentiment"
    step speech "$py" "$tools/spoken_digits.py" --variants m1 --rates 175 --pitches 50 "$dir/speech"
    step babi "$py" "$tools/babi_gen.py" --questions 100 "$dir/babi"
else
    step fmnist "$py" "$tools/fashion_mnist.py" --valid 5000 "$dir/fmnist"
    step kjv "$py" "$tools/kjv.py" "$dir/kjv"
    step sentiment "$py" "$tools/sentiment.py" "$dir/sentiment"
    step speech "$py" "$tools/spoken_digits.py" "$dir/speech"
    step babi "$py" "$tools/babi_gen.py" "$dir/babi"
fi
echo "apps_data.sh: all six data sets in $dir"
du -sh "$dir"/* 2>/dev/null | sed 's/^/  /'
