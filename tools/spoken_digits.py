#!/usr/bin/python3
"""Spoken digits, SYNTHETIC speech: the words zero..nine spoken by espeak-ng, as MFCC sequences.

The data is synthesised, not recorded: espeak-ng (Debian package espeak-ng) speaks each digit word
with 7 English accents (en-us en-gb en-gb-scotland en-gb-x-rp en-029 en-gb-x-gbclan en-gb-x-gbcwmd)
x voice variants (default m1 m2 m3 m4 m7 f1 f2 f3 f4 klatt) x rates (-s 130 175 words/min) x pitches
(-p 30 50 70): 7 x 10 x 2 x 3 x 10 = 4,200 mono 16-bit WAVs at 22,050 Hz (espeak-ng is
deterministic: the same command gives the same bytes). They are kept in OUT/wav/ and reused.

Features (tools/features.py): each WAV trimmed of leading and trailing samples below 1% of full scale,
then 0.97 pre-emphasis, 25 ms Hamming frames every 10 ms, 1024-point FFT, 40 mel bands
(20 Hz - 11,025 Hz), log, DCT-II -> --mfcc (default 20) coefficients per frame. Each coefficient is
standardised with the mean and standard deviation of the training frames (OUT/norm.npy, (2, D)),
then every sequence is LEFT-padded with zero vectors to T = --frames (default 90 frames = 0.9 s, the longest word measured being 83;
a longer word keeps its last T frames), so the last step of every sequence is the word's end.
OUT/<split>_len.npy holds each sequence's true frame count (at most T).

Split by accent, so the test voices are never heard in training: test = en-gb-scotland, valid =
en-029, train = the other five accents (all variants, rates and pitches of each).
Output: OUT/{train,valid,test}_x.npy (N, T, D) float32, OUT/{train,valid,test}_y.npy (N,) int32 (the
digit), OUT/{split}_voices.txt (the espeak voice, rate and pitch of each row).

usage: spoken_digits.py [--variants m1,f1,...] [--rates 130,175] [--pitches 30,50,70] [--mfcc 20]
                        [--frames 100] [--jobs 2] OUT_DIR
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import features  # noqa: E402

ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
SPLIT = {"en-gb-scotland": "test", "en-029": "valid"}
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRIM = 0.01


def die(msg):
    print("spoken_digits.py: " + msg, file=sys.stderr)
    sys.exit(1)


def synth(job):
    """Write one WAV (atomically) unless it exists; returns its path."""
    voice, rate, pitch, word, path = job
    if os.path.exists(path):
        return path
    tmp = path + ".tmp.wav"
    r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", tmp, word],
                       capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(tmp):
        raise RuntimeError("espeak-ng -v %s -s %d -p %d %s failed (%d): %s"
                           % (voice, rate, pitch, word, r.returncode, r.stderr.strip()))
    os.replace(tmp, path)
    return path


def trim(x, level=TRIM):
    loud = np.flatnonzero(np.abs(x) >= level)
    return x[loud[0]:loud[-1] + 1] if len(loud) else x[:0]


def word_features(path, n_mfcc):
    x, sr = features.read_wav(path)
    x = trim(x)
    if len(x) == 0:
        raise ValueError("%s: silent" % path)
    return features.mfcc(x, sr, n_mfcc=n_mfcc, n_mels=40).astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--accents", default=",".join(ACCENTS))
    ap.add_argument("--variants", default="m1,m2,m3,m4,m7,f1,f2,f3,f4,klatt")
    ap.add_argument("--rates", default="130,175")
    ap.add_argument("--pitches", default="30,50,70")
    ap.add_argument("--mfcc", type=int, default=20)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    if not shutil.which("espeak-ng"):
        die("espeak-ng is missing: apt-get install -y espeak-ng")
    accents = a.accents.split(",")
    unknown = [x for x in accents if x not in ACCENTS]
    if unknown:
        die("unknown accent(s) %s; known: %s" % (",".join(unknown), " ".join(ACCENTS)))
    for s in ("train", "valid", "test"):
        if not any(SPLIT.get(x, "train") == s for x in accents):
            die("--accents leaves the %s split empty (test: en-gb-scotland, valid: en-029)" % s)
    try:
        rates = [int(r) for r in a.rates.split(",")]
        pitches = [int(p) for p in a.pitches.split(",")]
    except ValueError:
        die("--rates and --pitches take comma-separated integers")
    wavdir = os.path.join(a.out, "wav")
    os.makedirs(wavdir, exist_ok=True)
    jobs = []
    for acc in accents:
        for var in a.variants.split(","):
            for rate in rates:
                for pitch in pitches:
                    for d, word in enumerate(DIGITS):
                        voice = "%s+%s" % (acc, var)
                        path = os.path.join(wavdir, "%s_%d_%d_%s.wav" % (voice, rate, pitch, word))
                        jobs.append((voice, rate, pitch, word, path, d, acc))
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
            list(ex.map(synth, [j[:5] for j in jobs]))
        feats = [word_features(j[4], a.mfcc) for j in jobs]
    except (RuntimeError, ValueError) as e:
        die(str(e))
    split = [SPLIT.get(j[6], "train") for j in jobs]
    train = np.concatenate([f for f, s in zip(feats, split) if s == "train"])
    mean, std = train.mean(0), train.std(0) + 1e-6
    np.save(os.path.join(a.out, "norm.npy"), np.stack([mean, std]).astype(np.float32))
    T, D = a.frames, a.mfcc
    lens = [f.shape[0] for f in feats]
    for s in ("train", "valid", "test"):
        rows = [i for i in range(len(jobs)) if split[i] == s]
        x = np.zeros((len(rows), T, D), np.float32)
        n = np.zeros(len(rows), np.int32)
        for r, i in enumerate(rows):
            f = ((feats[i] - mean) / std)[-T:]
            x[r, T - f.shape[0]:] = f
            n[r] = f.shape[0]
        np.save(os.path.join(a.out, s + "_x.npy"), x)
        np.save(os.path.join(a.out, s + "_y.npy"), np.array([jobs[i][5] for i in rows], np.int32))
        np.save(os.path.join(a.out, s + "_len.npy"), n)
        with open(os.path.join(a.out, s + "_voices.txt"), "w") as f:
            for i in rows:
                f.write("%s -s %d -p %d %s\n" % jobs[i][:4])
        print("%s: %d words (%s), %d x %d x %d" % (s, len(rows), ",".join(sorted({jobs[i][6] for i in rows})),
                                                  len(rows), T, D))
    print("frames per word: min %d, median %d, max %d (T = %d; %d longer, cut to the last T)"
          % (min(lens), int(np.median(lens)), max(lens), T, sum(1 for n in lens if n > T)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
