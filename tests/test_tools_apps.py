#!/usr/bin/python3
"""Unit tests of the application data tools (tools/{features,babi_gen,kjv,sentiment,spoken_digits}.py)
on tiny inputs: sizes and formats of what each writes, disjoint splits, same seed -> same bytes, the bAbI
answers re-derived by an independent simulator, the feature code against a direct computation, and
clear errors with a non-zero exit for corrupt or missing inputs.
usage: test_tools_apps.py SCRATCH_DIR   (run by tests/test_tools_apps.sh; prints SKIP for parts whose
Debian package, espeak-ng or bible-kjv, is not installed). Exit 0 if every check passed.
"""
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)
import babi_gen  # noqa: E402
import features  # noqa: E402

PY = sys.executable
T = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def tool(name, *args):
    """(exit status, stdout + stderr) of tools/<name> args."""
    r = subprocess.run([PY, os.path.join(TOOLS, name)] + [str(x) for x in args], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def digest(d):
    """sha256 over every file under d (names and bytes), skipping .wav caches."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(d)):
        for f in sorted(files):
            if f.endswith(".wav") or f.endswith(".tgz"):
                continue
            p = os.path.join(root, f)
            h.update(os.path.relpath(p, d).encode())
            with open(p, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def lines(p):
    with open(p, encoding="utf-8") as f:
        return f.read().splitlines()


# ------------------------------------------------------------------ features
def test_features():
    sr = 16000
    L, H = features.frame_sizes(sr)
    check((L, H) == (400, 160), "25 ms / 10 ms at 16 kHz are 400 / 160 samples, got %s" % ((L, H),))
    t = np.arange(sr // 2) / sr
    for f0 in (300.0, 1000.0, 3000.0):
        x = 0.5 * np.sin(2 * np.pi * f0 * t)
        lm = features.logmel(x, sr, n_mels=40)
        check(lm.shape == (1 + (len(x) - L) // H, 40), "logmel shape %s" % (lm.shape,))
        _, centres = features.mel_filterbank(40, 512, sr)
        edge = np.concatenate([[20.0], centres, [sr / 2]])  # the triangles' feet are their neighbours' centres
        tri = np.maximum(0, np.minimum((f0 - edge[:-2]) / (edge[1:-1] - edge[:-2]), (edge[2:] - f0) / (edge[2:] - edge[1:-1])))
        want = int(np.argmax(tri))
        got = np.bincount(lm.argmax(1)).argmax()
        check(got == want, "sine %g Hz: peak in mel band %d, want %d" % (f0, got, want))
        check(abs(centres[want] - f0) < 0.5 * (centres[want + 1] - centres[want - 1]),
              "sine %g Hz: band %d centred at %.0f Hz" % (f0, want, centres[want]))
    # Direct computation, loop by loop from the definitions, on noise at another sample rate.
    sr, n_mels, C = 8000, 12, 6
    x = np.random.default_rng(3).standard_normal(900)
    L, H = features.frame_sizes(sr)
    y = [x[0]] + [x[i] - 0.97 * x[i - 1] for i in range(1, len(x))]
    N = 256  # smallest power of two >= L = 200
    fmel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    lo, hi = fmel(20.0), fmel(sr / 2)
    edge = [imel(lo + (hi - lo) * j / (n_mels + 1)) for j in range(n_mels + 2)]
    F = 1 + (len(x) - L) // H
    ref = np.zeros((F, n_mels))
    for fi in range(F):
        fr = [y[fi * H + n] * (0.54 - 0.46 * math.cos(2 * math.pi * n / (L - 1))) for n in range(L)]
        P = [abs(sum(fr[n] * complex(math.cos(2 * math.pi * k * n / N), -math.sin(2 * math.pi * k * n / N))
                     for n in range(L))) ** 2 / N for k in range(N // 2 + 1)]
        for j in range(n_mels):
            e = 0.0
            for k in range(N // 2 + 1):
                f = k * sr / N
                w = max(0.0, min((f - edge[j]) / (edge[j + 1] - edge[j]), (edge[j + 2] - f) / (edge[j + 2] - edge[j + 1])))
                e += w * P[k]
            ref[fi, j] = math.log(max(e, 1e-10))
    got = features.logmel(x, sr, n_mels=n_mels)
    check(got.shape == ref.shape and np.allclose(got, ref, rtol=1e-9, atol=1e-9),
          "logmel differs from the direct computation by %.3g" % np.abs(got - ref).max())
    mf = features.mfcc(x, sr, n_mfcc=C, n_mels=n_mels)
    dref = np.array([[(math.sqrt(1 / n_mels) if q == 0 else math.sqrt(2 / n_mels)) *
                      sum(ref[fi, j] * math.cos(math.pi * q * (2 * j + 1) / (2 * n_mels)) for j in range(n_mels))
                      for q in range(C)] for fi in range(F)])
    check(np.allclose(mf, dref, rtol=1e-9, atol=1e-9), "mfcc differs from the direct DCT by %.3g" % np.abs(mf - dref).max())
    # Bad WAVs.
    bad = os.path.join(T, "bad.wav")
    with open(bad, "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEjunk")
    rc, out = tool("features.py", bad)
    check(rc == 1 and "not a readable WAV" in out, "features.py on a corrupt WAV: rc %d, %r" % (rc, out[-200:]))
    rc, out = tool("features.py", os.path.join(T, "missing.wav"))
    check(rc == 1 and "missing.wav" in out, "features.py on a missing WAV: rc %d, %r" % (rc, out[-200:]))


# ------------------------------------------------------------------ bAbI
MOVE = re.compile(r"^(\w+) (?:moved to|went to|journeyed to|travelled to|went back to) the (\w+)\.$")
GET = re.compile(r"^(\w+) (?:picked up|got|grabbed|took) the (\w+)\.$")
DROP = re.compile(r"^(\w+) (?:dropped|discarded|put down|left) the (\w+)\.$")


def resimulate(text, task):
    """Replay each story from its sentences and check every answer and support; returns #questions."""
    n_q, expect_id = 0, 1
    at, held, lying = {}, {}, {}
    for line in text.splitlines():
        sid, rest = line.split(" ", 1)
        sid = int(sid)
        if sid == 1:
            at, held, lying = {}, {}, {}
        check(sid == expect_id or sid == 1, "qa%d: ID %d after %d" % (task, sid, expect_id - 1))
        expect_id = sid + 1
        if "\t" in rest:
            q, ans, sup = rest.split("\t")
            sup = sorted(int(s) for s in sup.split())
            n_q += 1
            m = re.match(r"^Where is (\w+)\?$", q) or re.match(r"^Is (\w+) in the (\w+)\?$", q)
            mo = re.match(r"^Where is the (\w+)\?$", q)
            if task == 2:
                check(mo is not None, "qa2 asks %r" % q)
                o = mo.group(1)
                if o in held:
                    a, gid = held[o]
                    want, wsup = at[a][0], sorted({gid, at[a][1]})
                else:
                    want, wsup = lying[o][0], sorted({lying[o][1], lying[o][2]})
            else:
                a = m.group(1).lower()
                want, wsup = at[a][0], [at[a][1]]
                if task == 6:
                    want = "yes" if m.group(2) == at[a][0] else "no"
            check(ans == want and sup == wsup, "qa%d %r: answer %s %s, replay says %s %s" % (task, q, ans, sup, want, wsup))
            continue
        m = MOVE.match(rest)
        if m:
            at[m.group(1).lower()] = (m.group(2), sid)
            continue
        m = GET.match(rest)
        if m:
            a, o = m.group(1).lower(), m.group(2)
            check(o not in held and (o not in lying or lying[o][0] == at[a][0]), "qa%d: %r impossible" % (task, rest))
            held[o] = (a, sid)
            lying.pop(o, None)
            continue
        m = DROP.match(rest)
        check(m is not None, "qa%d: unknown sentence %r" % (task, rest))
        a, o = m.group(1).lower(), m.group(2)
        check(held.get(o, (None,))[0] == a, "qa%d: %r but %s does not hold it" % (task, rest, a))
        del held[o]
        lying[o] = (at[a][0], sid, at[a][1])
    return n_q


def test_babi():
    for task in (1, 2, 6):
        text = babi_gen.generate(task, 200, 7)
        check(text == babi_gen.generate(task, 200, 7), "qa%d: same seed, different text" % task)
        check(text != babi_gen.generate(task, 200, 8), "qa%d: another seed, same text" % task)
        check(resimulate(text, task) == 200, "qa%d: not 200 questions" % task)
        if task == 6:
            ans = [l.split("\t")[1] for l in text.splitlines() if "\t" in l]
            check(60 <= ans.count("yes") <= 140, "qa6: %d yes of 200" % ans.count("yes"))
    d1, d2 = os.path.join(T, "babi1"), os.path.join(T, "babi2")
    for d in (d1, d2):
        rc, out = tool("babi_gen.py", "--questions", 50, "--seed", 3, d)
        check(rc == 0, "babi_gen.py: rc %d %s" % (rc, out))
    check(digest(d1) == digest(d2), "babi_gen.py: same seed, different bytes")
    for t in (1, 2, 6):
        for s in ("train", "test"):
            check(resimulate("\n".join(lines(os.path.join(d1, "qa%d_%s.txt" % (t, s)))), t) == 50, "qa%d_%s: count" % (t, s))
    rows = {s: lines(os.path.join(d1, s + ".tsv")) for s in ("train", "valid", "test")}
    check(len(rows["train"]) + len(rows["valid"]) == 150 and len(rows["test"]) == 150,
          "babi tsv sizes %s" % {s: len(r) for s, r in rows.items()})
    for s, rs in rows.items():
        for r in rs:
            ans, tab, toks = r.partition("\t")
            check(tab and ans in babi_gen.PLACES + ["yes", "no"] and toks.endswith(" ?") and "\t" not in toks,
                  "babi %s.tsv row %r" % (s, r[:80]))
    # The converter on the original format, and on corrupt files.
    rc, out = tool("babi_gen.py", "--convert", os.path.join(d1, "qa1_test.txt"), "-o", os.path.join(T, "c.tsv"))
    check(rc == 0 and lines(os.path.join(T, "c.tsv")) == rows["test"][:50], "babi --convert differs: %s" % out)
    bad = os.path.join(T, "bad_qa.txt")
    with open(bad, "w") as f:
        f.write("1 Mary went to the kitchen.\n3 Where is Mary?\tkitchen\t1\n")
    rc, out = tool("babi_gen.py", "--convert", bad, "-o", os.path.join(T, "x.tsv"))
    check(rc == 1 and "line 2" in out, "babi --convert on an ID gap: rc %d %r" % (rc, out))
    rc, out = tool("babi_gen.py", "--convert", os.path.join(T, "nope.txt"), "-o", os.path.join(T, "x.tsv"))
    check(rc == 1 and "nope.txt" in out, "babi --convert on a missing file: rc %d %r" % (rc, out))


# ------------------------------------------------------------------ KJV
def fake_bible(path):
    rng = random.Random(5)
    words = ["the", "LORD", "said", "unto", "Moses", "and", "his", "sons'", "sea-shore", "God's", "light", "of"]
    with open(path, "w") as f:
        for book, n in (("Ge", 41), ("1Sam", 23), ("Jude", 9)):
            for v in range(1, n + 1):
                text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))
                f.write("%s%d:%d %s%s\n" % (book, 1 + v // 10, 1 + v % 10, text[0].upper() + text[1:], rng.choice(".,;:?!")))
    return {"Ge": 41, "1Sam": 23, "Jude": 9}


def check_kjv(d, books, vocab):
    sp = json.load(open(os.path.join(d, "split.json")))
    refs = {s: sp["splits"][s]["refs"] for s in ("train", "valid", "test")}
    allr = refs["train"] + refs["valid"] + refs["test"]
    check(len(set(allr)) == len(allr) == sum(books.values()), "kjv: splits overlap or miss verses")
    for b, n in books.items():
        k = max(2, math.ceil(0.05 * n))
        got = {s: [r for r in refs[s] if re.match(r"^%s\d" % b, r)] for s in refs}
        check((len(got["train"]), len(got["valid"]), len(got["test"])) == (n - k, k // 2, k - k // 2),
              "kjv %s: split %s" % (b, {s: len(g) for s, g in got.items()}))
    voc = {"<unk>"}
    for s in ("train", "valid", "test"):
        wl, cl = lines(os.path.join(d, "word", s + ".txt")), lines(os.path.join(d, "char", s + ".txt"))
        check(len(wl) == len(cl) == len(refs[s]), "kjv %s: %d word / %d char lines for %d verses" % (s, len(wl), len(cl), len(refs[s])))
        for l in wl:
            check(re.fullmatch(r"[a-z' <>]*", l) is not None, "kjv word line %r" % l)
            if s == "train":
                voc.update(l.split())
            else:
                check(set(l.split()) <= voc, "kjv %s: word outside the training vocabulary" % s)
    check(len(voc | {"<eos>"}) <= vocab, "kjv: %d tokens with <eos> and <unk>, over --vocab %d" % (len(voc) + 1, vocab))


def test_kjv():
    src = os.path.join(T, "kjv.txt")
    books = fake_bible(src)
    d1, d2 = os.path.join(T, "kjv1"), os.path.join(T, "kjv2")
    for d in (d1, d2):
        rc, out = tool("kjv.py", "--src", src, "--vocab", 8, d)
        check(rc == 0, "kjv.py: rc %d %s" % (rc, out))
    check(digest(d1) == digest(d2), "kjv.py: different bytes from the same input")
    check_kjv(d1, books, 8)
    check(lines(os.path.join(d1, "word", "train.txt"))[0] != "" and "<unk>" in open(os.path.join(d1, "word", "train.txt")).read(),
          "kjv: a vocabulary of 8 should leave <unk> words")
    orig = [l.split(" ", 1)[1] for l in lines(src)]
    check(sorted(sum((lines(os.path.join(d1, "char", s + ".txt")) for s in ("train", "valid", "test")), [])) == sorted(orig),
          "kjv char files are not the verses with references stripped")
    with open(os.path.join(T, "bad_kjv.txt"), "w") as f:
        f.write("Ge1:1 In the beginning.\nthis line has no reference\n")
    rc, out = tool("kjv.py", "--src", os.path.join(T, "bad_kjv.txt"), os.path.join(T, "kjvbad"))
    check(rc == 1 and "line 2" in out, "kjv.py on a line without reference: rc %d %r" % (rc, out))
    rc, out = tool("kjv.py", "--src", os.path.join(T, "none.txt"), os.path.join(T, "kjvbad"))
    check(rc == 1 and "none.txt" in out, "kjv.py on a missing file: rc %d %r" % (rc, out))
    if shutil.which("bible"):
        d = os.path.join(T, "kjv_real")
        rc, out = tool("kjv.py", "--limit-per-book", 30, d)
        check(rc == 0, "kjv.py on bible-kjv: rc %d %s" % (rc, out))
        if rc == 0:
            real = {}
            for s in json.load(open(os.path.join(d, "split.json")))["splits"].values():
                for r in s["refs"]:
                    b = re.match(r"^([1-3]?[A-Za-z]+)", r).group(1)
                    real[b] = real.get(b, 0) + 1
            check(len(real) == 66 and max(real.values()) == 30 and min(real.values()) == 13,
                  "bible-kjv: %d books of %d-%d verses, want 66 of 13-30" % (len(real), min(real.values()), max(real.values())))
            check_kjv(d, real, 10000)
    else:
        print("SKIP: kjv.py on the real text (bible-kjv is not installed: apt-get install -y bible-kjv)")


# ------------------------------------------------------------------ sentiment
def test_sentiment():
    rng = random.Random(2)
    data = [{"text": "Sentence %d, is it good?\tReally!" % i, "class": rng.randint(0, 1)} for i in range(53)]
    data.append({"text": "", "class": 0})
    src = os.path.join(T, "imdb.json")
    with open(src, "w") as f:
        json.dump(data, f)
    tgz = os.path.join(T, "s.tgz")
    with tarfile.open(tgz, "w:gz") as t:
        raw = json.dumps(data).encode()
        info = tarfile.TarInfo("package/test/fixtures/imdb.json")
        info.size = len(raw)
        t.addfile(info, io.BytesIO(raw))
    outs = []
    for name, s, seed in (("s1", src, 4), ("s2", tgz, 4), ("s3", src, 5)):
        d = os.path.join(T, name)
        rc, out = tool("sentiment.py", "--src", s, "--seed", seed, d)
        check(rc == 0, "sentiment.py: rc %d %s" % (rc, out))
        outs.append(d)
    check(digest(outs[0]) == digest(outs[1]), "sentiment.py: json and tgz inputs, different bytes")
    check(digest(outs[0]) != digest(outs[2]), "sentiment.py: another seed, same folds")
    n1 = sum(e["class"] for e in data[:-1])
    tests = []
    for i in range(5):
        f = {s: lines(os.path.join(outs[0], "fold_%d" % i, s + ".tsv")) for s in ("train", "valid", "test")}
        check(sum(len(x) for x in f.values()) == 53, "fold %d holds %d rows" % (i, sum(len(x) for x in f.values())))
        ids = {s: {int(re.search(r"sentence (\d+)", r).group(1)) for r in rs} for s, rs in f.items()}
        check(not (ids["train"] & ids["valid"] or ids["train"] & ids["test"] or ids["valid"] & ids["test"]),
              "fold %d: train/valid/test overlap" % i)
        pos = sum(r.startswith("1\t") for r in f["test"])
        check(abs(pos - n1 / 5) <= 1, "fold %d: %d positives in test, stratified wants %.1f" % (i, pos, n1 / 5))
        check(lines(os.path.join(outs[0], "fold_%d" % ((i + 1) % 5), "test.tsv")) == f["valid"], "fold %d: valid is not fold %d" % (i, (i + 1) % 5))
        for r in f["test"]:
            check(re.fullmatch(r"[01]\tsentence \d+ , is it good \? really !", r) is not None, "sentiment row %r" % r)
        tests += sorted(ids["test"])
    check(sorted(tests) == list(range(53)), "sentiment: test folds do not partition the sentences")
    with open(os.path.join(T, "bad.json"), "w") as f:
        f.write('[{"text": "a", "class": 0}, {"text": ')
    rc, out = tool("sentiment.py", "--src", os.path.join(T, "bad.json"), os.path.join(T, "sbad"))
    check(rc == 1 and "bad.json" in out, "sentiment.py on truncated JSON: rc %d %r" % (rc, out))
    rc, out = tool("sentiment.py", "--src", os.path.join(T, "no.json"), os.path.join(T, "sbad"))
    check(rc == 1 and "no.json" in out, "sentiment.py on a missing file: rc %d %r" % (rc, out))


# ------------------------------------------------------------------ speech
def test_speech():
    if not shutil.which("espeak-ng"):
        print("SKIP: spoken_digits.py (espeak-ng is not installed: apt-get install -y espeak-ng)")
        return
    args = ["--accents", "en-us,en-029,en-gb-scotland", "--variants", "m1", "--rates", "175", "--pitches", "50"]
    d1, d2 = os.path.join(T, "sp1"), os.path.join(T, "sp2")
    for d in (d1, d2):
        rc, out = tool("spoken_digits.py", *args, d)
        check(rc == 0, "spoken_digits.py: rc %d %s" % (rc, out))
    check(digest(d1) == digest(d2), "spoken_digits.py: same settings, different bytes")
    accents = {}
    for s in ("train", "valid", "test"):
        x, y, n = (np.load(os.path.join(d1, "%s_%s.npy" % (s, k))) for k in ("x", "y", "len"))
        check(x.shape == (10, 90, 20) and x.dtype == np.float32 and y.dtype == np.int32, "%s_x %s %s" % (s, x.shape, x.dtype))
        check(sorted(y.tolist()) == list(range(10)), "%s_y %s" % (s, y.tolist()))
        check(np.all((n > 10) & (n <= 90)) and all(np.all(x[i, :90 - n[i]] == 0) for i in range(10)),
              "%s: left padding does not match the lengths" % s)
        accents[s] = {l.split("+")[0] for l in lines(os.path.join(d1, s + "_voices.txt"))}
    check(accents == {"train": {"en-us"}, "valid": {"en-029"}, "test": {"en-gb-scotland"}}, "speech accents %s" % accents)
    rc, out = tool("spoken_digits.py", "--accents", "en-us,xx", os.path.join(T, "spbad"))
    check(rc == 1 and "xx" in out, "spoken_digits.py with an unknown accent: rc %d %r" % (rc, out))


def main():
    for t in (test_features, test_babi, test_kjv, test_sentiment, test_speech):
        n = len(failures)
        t()
        print("%s: %s" % (t.__name__, "ok" if len(failures) == n else "%d failure(s)" % (len(failures) - n)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
