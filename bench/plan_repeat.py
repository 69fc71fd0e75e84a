#!/usr/bin/python3
"""How far bench_plan's score is set by the machine: two or more saved bench_plan outputs compared.

    /usr/bin/python3 bench/plan_repeat.py [--predict BENCH_PLAN] RUN1.txt RUN2.txt [RUN3.txt ...]

Each RUN is the stdout of `build/bench_plan` (any options; the candidates common to all runs are
compared). With --predict, each run's predictions are made again by that bench_plan binary from the
run's own profile, the file bp_profile.json beside RUN (bench_plan --profile DIR/bp_profile.json
--refresh saves it there): a change to the cost model is scored on saved runs, their measurements
as they were, without timing anything. Printed, for every pair of runs (a, b):
  - meas~meas: candidates whose measured latency in b is within 15% of a's (the benchmark's own
    repeatability: no prediction fixed before both runs can be within 15% of both measurements of a
    candidate whose two measurements are more than 32% apart, and within 15% of both for all of them
    where they are not only if it falls in the overlap);
  - pred~pred: candidates whose predicted latency in b is within 15% of a's (the profile's
    repeatability: the two predictions were made from profiles taken minutes apart);
  - drift: the median over the candidates of measured b / measured a (the machine's speed between
    the runs);
  - score a, score b: each run's own predictions within 15% of its own measurements (bench_plan's
    score), and cross a->b: a's predictions against b's measurements.
Then the per-candidate table: measured and predicted in each run, and the median over the runs of
measured / predicted (a miss the same in every run is the model's; one that changes sign, the
machine's); last, for each candidate timed on one thread and on more, the median over the runs of the
measured speed-up over the predicted one (the thread scaling's own miss, apart from the one-thread
time's).
"""
import itertools
import math
import os
import re
import statistics
import subprocess
import sys

ROW = re.compile(r"^(dense|svd h/\d+|cp h/\d+)\s+(\d+)\s+(\d+)\s+\d+\s+([0-9.]+)\s+([0-9.]+)\s")
SHAPE = re.compile(r"^(\d+)/(\d+)/(\d+) \(input/hidden/layers\), seq (\d+)")


def rows(lines):
    """{(shape, config, batch, threads): (predicted us, measured us)} of bench_plan's output lines."""
    runs, shape = {}, None
    for line in lines:
        m = SHAPE.match(line)
        if m:
            shape = "%s/%s/%s T%s" % m.groups()
            continue
        m = ROW.match(line)
        if m and shape:
            runs[(shape, m.group(1), int(m.group(2)), int(m.group(3)))] = (float(m.group(4)), float(m.group(5)))
    return runs


def predict(bench_plan, path):
    """Predictions of `bench_plan --predict-only` from the profile saved beside run `path`."""
    prof = os.path.join(os.path.dirname(os.path.abspath(path)), "bp_profile.json")
    if not os.path.isfile(prof):
        sys.exit(f"plan_repeat: {path}: no bp_profile.json beside it to predict from")
    try:
        out = subprocess.run([bench_plan, "--profile", prof, "--predict-only"], capture_output=True, text=True)
    except OSError as e:
        sys.exit(f"plan_repeat: {bench_plan}: {e.strerror}")
    if out.returncode != 0:
        sys.exit(f"plan_repeat: {bench_plan} --profile {prof} --predict-only failed: {out.stderr.strip()}")
    return {k: v[0] for k, v in rows(out.stdout.splitlines()).items()}


def parse(path, bench_plan=None):
    """{(shape, config, batch, threads): (predicted us, measured us)} of one saved bench_plan output,
    the predictions made again by `bench_plan` when given."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        sys.exit(f"plan_repeat: {path}: {e.strerror}")
    runs = {k: v for k, v in rows(lines).items() if v[0] > 0 and v[1] > 0}
    if bench_plan:
        new = predict(bench_plan, path)
        runs = {k: (new[k], v[1]) for k, v in runs.items() if new.get(k, 0) > 0}
    if not runs:
        sys.exit(f"plan_repeat: {path}: no measured candidates (is it bench_plan's output, not --predict-only?)")
    return runs


def within(a, b):
    return abs(b / a - 1) <= 0.15


def main(argv):
    if len(argv) > 1 and argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    bench_plan = None
    if len(argv) > 2 and argv[1] == "--predict":
        bench_plan, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) < 3 or any(a.startswith("--") for a in argv[1:]):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    names = argv[1:]
    runs = [parse(p, bench_plan) for p in names]
    keys = sorted(set.intersection(*(set(r) for r in runs)))
    if not keys:
        sys.exit("plan_repeat: the runs have no candidate in common")
    n = len(keys)
    print(f"{n} candidates in all {len(runs)} runs")
    print(f"{'run a':>6} {'run b':>6} {'meas~meas':>10} {'pred~pred':>10} {'drift':>6} {'score a':>8} {'score b':>8} {'cross a->b':>11}")
    for i, j in itertools.combinations(range(len(runs)), 2):
        a, b = runs[i], runs[j]
        same = sum(within(a[k][1], b[k][1]) for k in keys)
        same_p = sum(within(a[k][0], b[k][0]) for k in keys)
        drift = sorted(b[k][1] / a[k][1] for k in keys)[n // 2]
        sa = sum(within(a[k][0], a[k][1]) for k in keys)
        sb = sum(within(b[k][0], b[k][1]) for k in keys)
        cross = sum(within(a[k][0], b[k][1]) for k in keys)
        print(f"{i + 1:>6} {j + 1:>6} {same:>6}/{n:<3} {same_p:>6}/{n:<3} {drift:>6.2f} {sa:>5}/{n:<2} {sb:>5}/{n:<2} {cross:>7}/{n:<3}")
    # the best any fixed prediction could do: per candidate, is there a value within 15% of every run's
    # measurement (max / min <= 1.15 / 0.85)?
    fixed = sum(max(r[k][1] for r in runs) / min(r[k][1] for r in runs) <= 1.15 / 0.85 for k in keys)
    print(f"candidates whose measurements in all {len(runs)} runs lie within a 1.35x band (one fixed prediction "
          f"could be within 15% of all): {fixed}/{n}")
    for idx, p in enumerate(names):
        print(f"run {idx + 1}: {p}")
    print(f"\n{'candidate':<34}" + "".join(f"{'meas ' + str(i + 1):>10}{'pred ' + str(i + 1):>10}" for i in range(len(runs)))
          + "  median meas/pred")
    for k in keys:
        cells = "".join(f"{r[k][1]:>10.1f}{r[k][0]:>10.1f}" for r in runs)
        spread = max(r[k][1] for r in runs) / min(r[k][1] for r in runs)
        ratio = statistics.median(r[k][1] / r[k][0] for r in runs)
        print(f"{k[0] + ' ' + k[1]:<24} B{k[2]:<3} t{k[3]:<3}{cells}  {ratio:5.2f}  spread {spread:.2f}"
              + (" *" if math.log(spread) > math.log(1.15 / 0.85) else ""))
    # the thread speed-up apart from the one-thread time: per candidate measured on one thread and on
    # more, (measured t1 / measured tN) / (predicted t1 / predicted tN) in each run, the median
    pairs = [(k, k[:3] + (1,)) for k in keys if k[3] > 1 and k[:3] + (1,) in keys]
    if pairs:
        print("\nthread speed-up, measured / predicted (> 1: the threads gain more than predicted), median over the runs")
        for k, k1 in pairs:
            g = statistics.median((r[k1][1] / r[k][1]) / (r[k1][0] / r[k][0]) for r in runs)
            print(f"{k[0] + ' ' + k[1]:<24} B{k[2]:<3} t1 -> t{k[3]:<3} {g:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
