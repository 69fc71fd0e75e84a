#!/usr/bin/python3
"""King James Bible -> word- and character-level language-model corpora for `fastlstm train --task lm`.

Source: Debian package bible-kjv, `bible -f gen1:1-rev22:21 </dev/null` (31,102 verses, one per line,
each prefixed by its reference such as `Ge1:1 ` or `1Sam3:4 `; public-domain text). --src reads such a
file instead of running `bible`.

Split, by verse ranges, the same for both corpora: in each of the 66 books (in order) the last
k = max(2, ceil(5% of the book's verses)) verses are held out, the first floor(k/2) of them for
validation and the rest for test; everything before is training text. Every book thus contributes to
all three splits, and no verse is in two.

Word corpus (OUT/word/{train,valid,test}.txt), the form `fastlstm train --task lm` reads (tokens
separated by spaces, a newline is the <eos> token):
  - one verse per line, the reference stripped;
  - lower-cased; a word is a maximal run of letters a-z, with inner apostrophes kept ("lord's");
    hyphens split words ("sea-shore" -> "sea shore"); all other punctuation is dropped;
  - vocabulary of --vocab (default 10000) entries built from the training text only: <unk>, <eos>
    (the newline) and the vocab-2 most frequent words (ties: first occurrence first, as fastlstm's
    vocabulary builder orders them); every other word, in all splits, is written as <unk>. So
    `fastlstm train --task lm --vocab-size 10000` keeps exactly this vocabulary.
Character corpus (OUT/char/{train,valid,test}.txt): the same verses, reference stripped, case and
punctuation kept, one verse per line (the newline is a character token, `--tokens char`).
OUT/split.json records the verse references of each split and the counts.

usage: kjv.py [--src KJV.txt] [--vocab 10000] [--limit-per-book N] OUT_DIR
  --limit-per-book N   keep the first N verses of each book (quick runs and tests)
"""
import argparse
import collections
import json
import math
import os
import re
import subprocess
import sys

REF = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def die(msg):
    print("kjv.py: " + msg, file=sys.stderr)
    sys.exit(1)


def read_verses(src):
    """[(book, reference, text)] from a file with one `Ref text` verse per line, or from `bible`."""
    if src:
        try:
            with open(src, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            die("%s: cannot read (%s)" % (src, e))
        where = src
    else:
        try:
            r = subprocess.run(["bible", "-f", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL,
                               capture_output=True, check=True)
        except FileNotFoundError:
            die("the `bible` program is missing: apt-get install -y bible-kjv (or pass --src FILE)")
        except subprocess.CalledProcessError as e:
            die("`bible -f gen1:1-rev22:21` failed (%d): %s" % (e.returncode, e.stderr.decode(errors="replace")))
        lines = r.stdout.decode("utf-8").splitlines()
        where = "bible output"
    verses = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = REF.match(line)
        if not m:
            die("%s line %d: expected `Book<chapter>:<verse> text`, got %r" % (where, i, line[:60]))
        verses.append((m.group(1), line.split(" ", 1)[0], m.group(4).strip()))
    if not verses:
        die("%s: no verses" % where)
    return verses


def split_books(verses, limit=0):
    """{'train'|'valid'|'test': [(ref, text)]}, by the per-book tail rule in the module doc."""
    books = collections.OrderedDict()
    for book, ref, text in verses:
        books.setdefault(book, []).append((ref, text))
    out = {"train": [], "valid": [], "test": []}
    for vs in books.values():
        if limit > 0:
            vs = vs[:limit]
        n = len(vs)
        if n < 3:
            die("a book with %d verse(s) cannot be split three ways" % n)
        k = max(2, math.ceil(0.05 * n))
        out["train"] += vs[:n - k]
        out["valid"] += vs[n - k:n - k + k // 2]
        out["test"] += vs[n - k + k // 2:]
    return out


def words(text):
    return WORD.findall(text.lower().replace("-", " "))


def build_vocab(lines, size):
    """<unk>, <eos>, then the size-2 most frequent words (ties by first occurrence)."""
    count, first = collections.Counter(), {}
    for ws in lines:
        for w in ws:
            count[w] += 1
            first.setdefault(w, len(first))
    ranked = sorted(count, key=lambda w: (-count[w], first[w]))
    return {"<unk>", "<eos>"} | set(ranked[:max(0, size - 2)])


def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--src", default=None)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--limit-per-book", type=int, default=0)
    a = ap.parse_args(argv)
    if a.vocab < 3:
        die("--vocab must be at least 3 (<unk>, <eos> and a word)")
    sp = split_books(read_verses(a.src), a.limit_per_book)
    for d in ("word", "char"):
        os.makedirs(os.path.join(a.out, d), exist_ok=True)
    tok = {s: [words(t) for _, t in sp[s]] for s in sp}
    vocab = build_vocab(tok["train"], a.vocab)
    stats = {"vocab": len(vocab), "splits": {}}
    for s in ("train", "valid", "test"):
        wl = [" ".join(w if w in vocab else "<unk>" for w in ws) for ws in tok[s]]
        write(os.path.join(a.out, "word", s + ".txt"), wl)
        write(os.path.join(a.out, "char", s + ".txt"), [t for _, t in sp[s]])
        ntok = sum(len(ws) + 1 for ws in tok[s])  # + <eos>
        nunk = sum(1 for ws in tok[s] for w in ws if w not in vocab)
        nchar = sum(len(t) + 1 for _, t in sp[s])
        stats["splits"][s] = {"verses": len(sp[s]), "word_tokens": ntok, "unk": nunk, "chars": nchar,
                              "first": sp[s][0][0], "refs": [r for r, _ in sp[s]]}
        print("%s: %d verses, %d word tokens (%.2f%% <unk>), %d characters" %
              (s, len(sp[s]), ntok, 100.0 * nunk / max(1, ntok), nchar))
    with open(os.path.join(a.out, "split.json"), "w") as f:
        json.dump(stats, f)
    print("vocabulary %d -> %s/{word,char}/{train,valid,test}.txt" % (len(vocab), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
