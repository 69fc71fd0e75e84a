#!/usr/bin/python3
"""Writes the report of bench/apps/run.sh (docs/apps.md) from its results directory.

  report.py --run CACHE/run --out docs/apps.md [--quick]

Reads, per application APP in CACHE/run/APP/: config.json, torch.json (PyTorch's own training),
SPLIT/{dense,comp}_eval.json (fastlstm eval on the test split), SPLIT/compress.json (the plan, its
regime and certification), SPLIT/{dense,comp}_info.json (parameters, flops, method and rank per matrix)
and timing.txt (lines "SYSTEM BATCH ms MEDIAN MIN MAX" or "SYSTEM BATCH unavailable: why"). An
application without results gets a row saying what is missing. Plots (PNG, matplotlib) go to
OUT's directory/apps/ when matplotlib imports; otherwise the report says the tables are all there is."""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys

APPS = ["fmnist", "wordlm", "sentiment", "speech", "babi", "charlm"]
TITLE = {"fmnist": "Image rows (Fashion-MNIST)", "wordlm": "Word language model (KJV)",
         "sentiment": "Sentiment (IMDB sentences, 5 folds)", "speech": "Speech (synthetic spoken digits)",
         "babi": "Question answering (synthetic bAbI)", "charlm": "Character language model (KJV)"}
SYSTEMS = ["fastlstm-compressed", "fastlstm-dense", "pytorch-dense", "pytorch-int8", "onnxruntime-dense",
           "onednn-lstm"]
LABEL = {"fastlstm-compressed": "fastlstm compressed", "fastlstm-dense": "fastlstm dense",
         "pytorch-dense": "PyTorch dense", "pytorch-int8": "PyTorch dynamic int8",
         "onnxruntime-dense": "ONNX Runtime dense", "onednn-lstm": "oneDNN dense (LSTM part only)"}
FLOAT_PEERS = ["onnxruntime-dense", "onednn-lstm"]
SUMMARY_COLS = ["app", "metric", "PyTorch-trained", "fastlstm dense", "compressed", "within budget",
                "b1 compressed ms", "b1 PyTorch ms", "b1 int8 ms", "b1 ORT ms", "b1 oneDNN ms",
                "x PyTorch", "x fastest float peer", "x int8", "b16 x PyTorch"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def timing(path):
    out = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        sysname, b = parts[0], int(parts[1])
        if parts[2] == "ms" and len(parts) >= 6:
            out[(sysname, b)] = float(parts[3])
        else:
            out[(sysname, b)] = " ".join(parts[2:])
    return out


def geomean(v):
    v = [x for x in v if isinstance(x, float) and x > 0]
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else None


def fmt(x, nd=3):
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return ("%." + str(nd) + "g") % x if abs(x) < 1000 else "%.0f" % x


def app_result(run, app):
    """Everything the report says about one application (None where a step has not run)."""
    R = os.path.join(run, app)
    cfg = load(os.path.join(R, "config.json"))
    if cfg is None:
        return None
    splits = sorted(d for d in os.listdir(R) if d.startswith("fold_")) or ["."]
    lm = cfg["kind"].startswith("lm")
    key = "perplexity" if lm else "accuracy"
    dense, comp, comps, infos = [], [], [], []
    for s in splits:
        de, ce = load(os.path.join(R, s, "dense_eval.json")), load(os.path.join(R, s, "comp_eval.json"))
        if de and ce:
            scale = 1.0 if lm else 100.0
            dense.append(de[key] * scale)
            comp.append(ce[key] * scale)
        comps.append(load(os.path.join(R, s, "compress.json")))
        infos.append((load(os.path.join(R, s, "dense_info.json")), load(os.path.join(R, s, "comp_info.json"))))
    th = load(os.path.join(R, "torch.json"))
    torch_metric = None
    if th and "test" in th:
        torch_metric = th["test"] * (1.0 if lm else 100.0)
    res = {"cfg": cfg, "lm": lm, "splits": splits, "dense": dense, "comp": comp, "compress": comps,
           "info": infos, "torch": torch_metric, "torch_raw": th, "timing": timing(os.path.join(R, "timing.txt"))}
    res["within"] = within_budget(res)
    return res


def within_budget(r):
    """(met?, text): accuracy points lost <= budget, or perplexity increase <= budget (relative); over
    folds, the paired one-sided 90% upper bound of the mean loss (t quantile) must be within it."""
    d, c, b = r["dense"], r["comp"], r["cfg"]["budget"]
    if not d or len(d) != len(c) or len(d) != len(r["splits"]):
        return None, "not evaluated"
    if r["lm"]:
        loss = [(ci / di - 1.0) * 100.0 for di, ci in zip(d, c)]
        lim = b * 100.0
        unit = "% perplexity"
    else:
        loss = [di - ci for di, ci in zip(d, c)]
        lim = b
        unit = " points"
    if len(loss) == 1:
        return loss[0] <= lim + 1e-9, "loss %+.2f%s (budget %g%s)" % (loss[0], unit, lim, unit)
    m, sd = statistics.mean(loss), statistics.stdev(loss)
    t90 = {2: 3.078, 3: 1.886, 4: 1.638, 5: 1.533, 6: 1.476}.get(len(loss), 1.4)
    ub = m + t90 * sd / math.sqrt(len(loss))
    return ub <= lim + 1e-9, "paired loss %+.2f%s over %d folds (sd %.2f), 90%% upper bound %+.2f (budget %g%s)" % (
        m, unit, len(loss), sd, ub, lim, unit)


def metric_text(v, lm):
    if not v:
        return "n/a"
    if len(v) == 1:
        return ("%.2f" if lm else "%.2f%%") % v[0]
    return ("%.2f ± %.2f" if lm else "%.2f%% ± %.2f") % (statistics.mean(v), statistics.stdev(v))


def uncompressed(r):
    """" (kept dense)" when no split's compressed model decomposes any matrix (nothing certified)."""
    infos = [c for _, c in r["info"] if c]
    if infos and all(m["method"] == "dense" for c in infos for m in c.get("matrices", [])):
        return " (kept dense: nothing certified)"
    return ""


def speedups(r, b):
    """Ratios peer latency / compressed latency at batch b."""
    t = r["timing"] or {}
    c = t.get(("fastlstm-compressed", b))
    if not isinstance(c, float):
        return {}
    out = {}
    for s in SYSTEMS[1:]:
        v = t.get((s, b))
        if isinstance(v, float):
            out[s] = v / c
    fl = [t.get((s, b)) for s in FLOAT_PEERS if isinstance(t.get((s, b)), float)]
    if fl:
        out["fastest-float"] = min(fl) / c
    return out


def decomposition_lines(res):
    """Where the speedup over the fastest dense float peer comes from: the runtime (fastlstm dense against
    the peer) times the compression (fastlstm dense against compressed), and why a plan kept dense."""
    L = ["## Where the speedup comes from (batch 1)", "",
         "x fastest float peer = (fastest float peer / fastlstm dense) x (fastlstm dense / compressed). "
         "A plan keeps the dense model when no candidate's 90% upper bound on the paired loss, on validation "
         "data the search did not see, is within the budget; with n held-back sequences one changed "
         "prediction moves accuracy by 100/n points.", "",
         "| application | runtime: peer / fastlstm dense | compression: dense / compressed | held-back for certification | certified |",
         "|---|---|---|---|---|"]
    for app in APPS:
        r = res[app]
        if r is None:
            continue
        t = r["timing"] or {}
        d, c = t.get(("fastlstm-dense", 1)), t.get(("fastlstm-compressed", 1))
        peers = [t.get((k, 1)) for k in ("onnxruntime-dense", "onednn-lstm")]
        peers = [v for v in peers if isinstance(v, float)]
        comp = (r["compress"][0] if r["compress"] else None) or {}  # a split not compressed yet: None
        cert = comp.get("certification") or {}
        n = cert.get("count")
        unit = "tokens" if r["lm"] else "sequences (1 = %.2f points)" % (100.0 / n) if n else ""
        rt = "%.2fx" % (min(peers) / d) if peers and isinstance(d, float) else "n/a"
        cp = "%.2fx" % (d / c) if isinstance(d, float) and isinstance(c, float) else "n/a"
        L.append("| `%s` | %s | %s | %s | %s |" % (app, rt, cp, "%s %s" % (n, unit) if n else "n/a",
                                                  "yes" if (comp.get("chosen") or {}).get("certified") else "no"))
    L.append("")
    return L


def plan_lines(r):
    out = []
    comp = r["compress"][0] if r["compress"] else None
    dinfo, cinfo = r["info"][0] if r["info"] else (None, None)
    if comp:
        cert = comp.get("certification") or {}
        ch = comp.get("chosen") or {}
        out.append("Regime: **%s** (last level %.1f MiB, batch %s, seq %s). Certified: %s." % (
            comp.get("regime", "?"), comp.get("last_level_bytes", 0) / 2**20, comp.get("batch"), comp.get("seq"),
            "yes" if ch.get("certified") else "no — the input model is kept where no candidate certified"))
        if isinstance(cert, dict) and cert:
            out.append("Certification: " + ", ".join("%s %s" % (k, v) for k, v in cert.items()
                                                     if not isinstance(v, (list, dict))) + ".")
    if cinfo and dinfo:
        out.append("")
        out.append("| matrix | shape | dense params | plan | params | flops/step |")
        out.append("|---|---|---|---|---|---|")
        dm = {m["name"]: m for m in dinfo.get("matrices", [])}
        for m in cinfo.get("matrices", []):
            d = dm.get(m["name"], {})
            plan = m["method"] if m["method"] == "dense" else "%s rank %d" % (m["method"], m["rank"])
            out.append("| %s | %dx%d | %s | %s | %s | %s |" % (m["name"], m["rows"], m["cols"], d.get("params", "?"),
                                                           plan, m["params"], m["flops"]))
        tot = lambda i, k: i.get(k, i.get("total", {}).get(k) if isinstance(i.get("total"), dict) else None)  # noqa: E731
        out.append("")
        out.append("Whole model: parameters %s dense -> %s compressed; flops per step %s -> %s." % (
            tot(dinfo, "params"), tot(cinfo, "params"), tot(dinfo, "flops_per_step"), tot(cinfo, "flops_per_step")))
    return out


def plot(r, app, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = r["timing"] or {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    dm = statistics.mean(r["dense"]) if r["dense"] else None
    cm = statistics.mean(r["comp"]) if r["comp"] else None
    for s in SYSTEMS:
        v = t.get((s, 1))
        m = cm if s == "fastlstm-compressed" else (dm if s != "pytorch-int8" else None)
        if isinstance(v, float) and m is not None:
            ax.scatter([v], [m], label=LABEL[s])
    ax.set_xscale("log")
    ax.set_xlabel("latency per request, batch 1, 1 thread (ms)")
    ax.set_ylabel("test perplexity" if r["lm"] else "test accuracy (%)")
    ax.set_title(TITLE[app] + (" — QUICK" if r["cfg"]["quick"] else ""), fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    res = {app: app_result(a.run, app) for app in APPS}
    try:
        import matplotlib  # noqa: F401
        plots = True
    except ImportError:
        plots = False
    outdir = os.path.dirname(os.path.abspath(a.out))
    L = []
    L.append("# Six applications: accuracy against latency" + (" — QUICK SMOKE RUN" if a.quick else ""))
    L.append("")
    if a.quick:
        L.append("**QUICK: tiny data subsets, hidden 32, one epoch. These figures mean nothing; they show the "
                 "pipeline runs.** The real report: `bash bench/apps/run.sh`.")
        L.append("")
    cpu = "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    L.append("Written by `bash bench/apps/run.sh%s` on %s, %d CPUs (%s), %s UTC. Every latency: one request "
             "(batch B sequences of the application's natural length) through the whole model (embedding, LSTM "
             "layers, head), 1 thread, median of the run's rounds, the same weights on every side, all in one run; "
             "oneDNN times the LSTM layers only (no embedding or head), so its figure flatters it. PyTorch, ONNX "
             "Runtime and oneDNN run fastlstm's dense weights: their test metric is fastlstm dense's; dynamic int8 "
             "changes the outputs (about 2-3%% deviation, bench/peers) and its test metric is not measured here." % (
                 " --quick" if a.quick else "", platform.node() or "this machine", os.cpu_count() or 0, cpu,
                 datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
    if all(r is None for r in res.values()):
        L.append("")
        L.append("**No application has been run yet in %s: every figure below is missing. Run "
                 "`bash bench/apps/run.sh` (about 2 hours here; it resumes where it stopped).**" % a.run)
    peers = os.path.join(a.run, "peers.txt")
    if os.path.exists(peers):
        L.append("")
        L.append("Peers: " + open(peers).read().strip())
    # OPENBLAS_CORETYPE of each application's timing (run.sh: the same for every side)
    cores = sorted({str((r["timing"] or {}).get(("blas-core", 0), "not recorded"))
                    for r in res.values() if r is not None and r["timing"]})
    if cores:
        L.append("")
        L.append("OpenBLAS kernels (`OPENBLAS_CORETYPE`, the same for every side of a timing): %s." % ", ".join(cores))
    L.append("")
    # ------------------------------------------------------------ summary
    L.append("## Summary (batch 1 unless noted; xN = peer latency / compressed fastlstm latency)")
    L.append("")
    L.append("| " + " | ".join(SUMMARY_COLS) + " |")
    L.append("|" + "---|" * len(SUMMARY_COLS))
    g = {"pytorch-dense": [], "fastest-float": [], "pytorch-int8": [], "b16": []}
    slow_int8, over50, budget_missed = [], [], []
    for app in APPS:
        r = res[app]
        if r is None:
            L.append("| " + " | ".join([app] + ["not run"] * (len(SUMMARY_COLS) - 1)) + " |")
            budget_missed.append(app)
            over50.append("%s (not run)" % app)
            continue
        t = r["timing"] or {}
        sp, sp16 = speedups(r, 1), speedups(r, 16)
        for k in ("pytorch-dense", "fastest-float", "pytorch-int8"):
            if k in sp:
                g[k].append(sp[k])
        if "pytorch-dense" in sp16:
            g["b16"].append(sp16["pytorch-dense"])
        if sp.get("pytorch-int8", 2.0) <= 1.0:
            slow_int8.append(app)
        c1 = t.get(("fastlstm-compressed", 1))
        if not isinstance(c1, float) or c1 >= 50.0:
            over50.append("%s (%s ms)" % (app, fmt(c1)))
        met, _ = r["within"]
        if not met:
            budget_missed.append(app)
        ms = lambda s: fmt(t.get((s, 1)) if isinstance(t.get((s, 1)), float) else None)  # noqa: E731
        x = lambda d, k: ("%.2fx" % d[k]) if k in d else "n/a"  # noqa: E731
        L.append("| " + " | ".join([
            app, "perplexity" if r["lm"] else "accuracy",
            metric_text([r["torch"]] if r["torch"] is not None else [], r["lm"]),
            metric_text(r["dense"], r["lm"]), metric_text(r["comp"], r["lm"]) + uncompressed(r),
            {True: "yes", False: "**no**", None: "n/a"}[met],
            ms("fastlstm-compressed"), ms("pytorch-dense"), ms("pytorch-int8"), ms("onnxruntime-dense"),
            ms("onednn-lstm"), x(sp, "pytorch-dense"), x(sp, "fastest-float"), x(sp, "pytorch-int8"),
            x(sp16, "pytorch-dense")]) + " |")
    gm = {k: geomean(v) for k, v in g.items()}
    L.append("| **geomean** | | | | | | | | | | | %s | %s | %s | %s |" % tuple(
        ("**%.2fx**" % gm[k]) if gm[k] else "n/a" for k in ("pytorch-dense", "fastest-float", "pytorch-int8", "b16")))
    L.append("")
    # ------------------------------------------------------------ goals
    L.append("## Goals")
    L.append("")

    def goal(text, value, target, extra=""):
        if value is None:
            return "- %s: **not measured**%s" % (text, extra)
        ok = value >= target
        gap = "" if ok else " — missed by %.2fx (%.0f%% short)" % (target / value, (1 - value / target) * 100)
        return "- %s: **%s** (measured %.2fx, goal %gx)%s%s" % (text, "met" if ok else "MISSED", value, target, gap, extra)
    n = lambda k: " over %d of 6 applications" % len(g[k]) if len(g[k]) < 6 else ""  # noqa: E731
    L.append(goal("compressed >= 15x geomean faster than PyTorch dense at batch 1", gm["pytorch-dense"], 15,
                  n("pytorch-dense")))
    L.append(goal("compressed >= 3x geomean faster than the fastest dense float peer (ONNX Runtime, oneDNN)",
                  gm["fastest-float"], 3, n("fastest-float")))
    L.append(goal("compressed >= 2x geomean faster than PyTorch dynamic int8", gm["pytorch-int8"], 2, n("pytorch-int8")))
    L.append("- faster than PyTorch dynamic int8 on every application: %s" % (
        "**met**" if not slow_int8 and len(g["pytorch-int8"]) == 6 else
        "**MISSED** (%s)" % (", ".join(slow_int8) if slow_int8 else "not measured on every application")))
    L.append("- every test metric within the budget of its dense model: %s" % (
        "**met**" if not budget_missed else "**MISSED**: " + ", ".join(
            "%s (%s)" % (a_, res[a_]["within"][1] if res[a_] else "not run") for a_ in budget_missed)))
    L.append("- every batch-1 request under 50 ms: %s" % ("**met**" if not over50 else "**MISSED**: " + ", ".join(over50)))
    L.append("")
    L += decomposition_lines(res)
    if not plots:
        L.append("(matplotlib is not installed — `apt-get install -y python3-matplotlib` — so there are no plots; "
                 "the tables hold every figure.)")
        L.append("")
    # ------------------------------------------------------------ per application
    for app in APPS:
        r = res[app]
        L.append("## " + TITLE[app])
        L.append("")
        if r is None:
            L.append("Not run yet (`bash bench/apps/run.sh --only %s`)." % app)
            L.append("")
            continue
        c = r["cfg"]
        L.append("Dense model: hidden %d x %d layer(s)%s, dropout %g, %s; hidden size from the %s. Budget: %s; "
                 "compression %s; request length %d steps.%s" % (
                     c["hidden"], c["layers"], ", embedding %d" % c["embed"] if c["embed"] else "", c["dropout"],
                     ("%d epoch(s) capped at %d training tokens (both trainers)" % (c["epochs"], c["train_tokens"])
                      if c.get("train_tokens") else "%d epoch(s)" % c["epochs"]), c["hidden_source"], "%g%% perplexity" % (c["budget"] * 100) if r["lm"] else
                     "%g accuracy points" % c["budget"], "fine-tuned (`compress --finetune`)" if c["finetune"]
                     else "without fine-tuning", c["seq"], " Extra train options: `%s`." % c["extra"] if c["extra"] else ""))
        if c.get("lengths"):
            L.append("")
            L.append("fastlstm is timed on variable-length batches (the true lengths of the first B test sequences, "
                     "`--lengths`); the peers run padded to %d steps." % c["seq"])
        L.append("")
        L.append("| test %s | value |" % ("perplexity" if r["lm"] else "accuracy"))
        L.append("|---|---|")
        L.append("| PyTorch's own training of the configuration%s | %s |" % (
            " (mean of folds)" if len(r["splits"]) > 1 else "", metric_text([r["torch"]] if r["torch"] is not None else [], r["lm"])))
        L.append("| fastlstm dense | %s |" % metric_text(r["dense"], r["lm"]))
        L.append("| fastlstm compressed | %s |" % metric_text(r["comp"], r["lm"]))
        L.append("| within budget | %s |" % r["within"][1])
        if len(r["splits"]) > 1 and r["torch_raw"] and "folds" in r["torch_raw"]:
            L.append("| PyTorch per fold | %s |" % ", ".join("%.1f%%" % (100 * v) for v in r["torch_raw"]["folds"]))
            L.append("| fastlstm dense / compressed per fold | %s |" % ", ".join(
                "%.1f / %.1f" % (d, cc) for d, cc in zip(r["dense"], r["comp"])))
        L.append("")
        L.extend(plan_lines(r))
        L.append("")
        t = r["timing"]
        if t:
            L.append("| system | batch 1 ms | batch 16 ms | b1 x vs compressed |")
            L.append("|---|---|---|---|")
            sp = speedups(r, 1)
            for s in SYSTEMS:
                v1, v16 = t.get((s, 1)), t.get((s, 16))
                L.append("| %s | %s | %s | %s |" % (LABEL[s], fmt(v1, 4), fmt(v16, 4),
                                                   ("%.2fx" % sp[s]) if s in sp else ""))
            L.append("")
        else:
            L.append("Timing not run yet.")
            L.append("")
        if plots and t:
            os.makedirs(os.path.join(outdir, "apps"), exist_ok=True)
            png = os.path.join(outdir, "apps", "%s%s.png" % (app, "-quick" if a.quick else ""))
            try:
                plot(r, app, png)
                L.append("![%s](%s)" % (app, os.path.relpath(png, outdir)))
                L.append("")
            except Exception as e:  # noqa: BLE001 (a plot never stops the report)
                L.append("(plot failed: %s)" % e)
                L.append("")
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L) + "\n")
    os.replace(tmp, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
