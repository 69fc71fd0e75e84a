#!/usr/bin/python3
"""IMDB sentences of npm sentiment@5.0.2 -> labelled text for k-fold cross-validation.

Source: `npm pack sentiment@5.0.2` (fetched into a temporary directory and the tarball kept as
OUT/sentiment-5.0.2.tgz), file package/test/fixtures/imdb.json: a JSON array of
{"text": ..., "class": 0|1}; the last entry is empty and is dropped, leaving 500 negative (0) and 500
positive (1) sentences from IMDB reviews (UCI "Sentiment Labelled Sentences", Kotzias et al. 2015,
CC BY 4.0). --src reads an imdb.json or a .tgz instead of fetching.

Text: lower-cased, each punctuation character split off as its own token ("great!" -> "great !"),
whitespace runs (tabs included) collapsed to one space: word tokens separated by spaces.
Folds (k = --folds, default 5, seed --seed, default 1): stratified; the sentences of each class are
shuffled with numpy's default_rng(seed) and dealt round-robin to folds 0..k-1, so every fold holds
100 +- 1 of each class. Fold i: test = fold i, valid = fold (i+1) mod k, train = the other k-2
folds. Each sentence is in exactly one test fold.
Output: OUT/fold_<i>/{train,valid,test}.tsv, one `label<TAB>text` line per sentence (label 0 or 1),
in original order within each file.

usage: sentiment.py [--src imdb.json|sentiment-5.0.2.tgz] [--folds 5] [--seed 1] [--limit N] OUT_DIR
  --limit N   keep the first N sentences of each class (quick runs)
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

PACKAGE = "sentiment@5.0.2"
TGZ = "sentiment-5.0.2.tgz"
MEMBER = "package/test/fixtures/imdb.json"


def die(msg):
    print("sentiment.py: " + msg, file=sys.stderr)
    sys.exit(1)


def fetch(out):
    """OUT/sentiment-5.0.2.tgz, from npm if not there yet."""
    dst = os.path.join(out, TGZ)
    if os.path.exists(dst):
        return dst
    if not shutil.which("npm"):
        die("npm is missing: apt-get install -y npm (or pass --src imdb.json)")
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["npm", "pack", PACKAGE], cwd=tmp, capture_output=True, text=True)
        got = os.path.join(tmp, TGZ)
        if r.returncode != 0 or not os.path.exists(got):
            die("`npm pack %s` failed (%d): %s" % (PACKAGE, r.returncode, r.stderr.strip()[-400:]))
        shutil.copy(got, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
    return dst


def load(src):
    """[(label, text)] from imdb.json or the npm tarball; the empty entry is dropped."""
    try:
        if src.endswith(".tgz") or src.endswith(".tar.gz"):
            with tarfile.open(src) as t:
                raw = t.extractfile(MEMBER).read()
        else:
            with open(src, "rb") as f:
                raw = f.read()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, KeyError, tarfile.TarError, UnicodeDecodeError, json.JSONDecodeError) as e:
        die("%s: cannot read %s (%s)" % (src, MEMBER if src.endswith("gz") else "the JSON array", e))
    if not isinstance(data, list):
        die("%s: expected a JSON array of {\"text\", \"class\"}" % src)
    out = []
    for i, e in enumerate(data):
        if not isinstance(e, dict) or "text" not in e or "class" not in e:
            die("%s: entry %d is not {\"text\", \"class\"}" % (src, i))
        text = normalise(str(e["text"]))
        if not text:
            continue
        if e["class"] not in (0, 1):
            die("%s: entry %d has class %r, expected 0 or 1" % (src, i, e["class"]))
        out.append((int(e["class"]), text))
    if not out:
        die("%s: no sentences" % src)
    return out


def normalise(text):
    text = re.sub(r"([^\w\s'])", r" \1 ", text.lower())
    return " ".join(text.split())


def folds(labels, k, seed):
    """fold index per example: stratified, shuffled by default_rng(seed), dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    labels = np.asarray(labels)
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def write(path, rows):
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        for y, t in rows:
            f.write("%d\t%s\n" % (y, t))
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--src", default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(argv)
    if a.folds < 3:
        die("--folds must be at least 3 (train, valid and test folds)")
    os.makedirs(a.out, exist_ok=True)
    rows = load(a.src or fetch(a.out))
    if a.limit > 0:
        kept, seen = [], {}
        for y, t in rows:
            seen[y] = seen.get(y, 0) + 1
            if seen[y] <= a.limit:
                kept.append((y, t))
        rows = kept
    fold = folds([y for y, _ in rows], a.folds, a.seed)
    for i in range(a.folds):
        d = os.path.join(a.out, "fold_%d" % i)
        os.makedirs(d, exist_ok=True)
        v = (i + 1) % a.folds
        write(os.path.join(d, "test.tsv"), [r for r, f in zip(rows, fold) if f == i])
        write(os.path.join(d, "valid.tsv"), [r for r, f in zip(rows, fold) if f == v])
        write(os.path.join(d, "train.tsv"), [r for r, f in zip(rows, fold) if f not in (i, v)])
    n1 = sum(y for y, _ in rows)
    print("%d sentences (%d positive, %d negative), %d folds (seed %d) -> %s/fold_*/{train,valid,test}.tsv"
          % (len(rows), n1, len(rows) - n1, a.folds, a.seed, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
