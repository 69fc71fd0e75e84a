#!/usr/bin/python3
"""PyTorch baselines of the six applications (issue 12): the model fastlstm trains, trained by PyTorch.

Models (the same configuration as `fastlstm train`):
  features   .npy (N, T, D) float32 + labels (N,) -> nn.LSTM -> nn.Linear on the last step
             (fmnist, speech: DIR/{train,valid,test}_{x,y}.npy)
  text-cls   `label<TAB>text` lines, word tokens -> nn.Embedding -> nn.LSTM -> nn.Linear on each line's
             last token (packed sequences: padding never reaches the LSTM) (babi, sentiment:
             DIR/{train,valid,test}.tsv; DIR/fold_<i>/ for every fold when DIR holds folds)
  lm         a text corpus, word or char tokens (a newline is <eos> for words, a character for chars)
             -> nn.Embedding -> nn.LSTM -> nn.Linear on every step; trained with truncated BPTT over
             --batch parallel streams, state carried; clip 5 (word-lm, char-lm: DIR/{train,valid,test}.txt)
Vocabulary as fastlstm builds it: from the training file, <unk> = 0 then the --vocab-size - 1 most
frequent tokens (ties: first occurrence first). Labels of text-cls: the distinct training labels,
sorted (numerically when all are integers). Dropout (--dropout) on every LSTM layer's output, as
fastlstm's. Adam (--lr, default 1e-3), --epochs, --batch (default 32 / 20 for lm), --bptt 35, seed
--seed. The weights of the epoch with the best validation metric are kept; the test set is read
once, at the end.
Test metric: accuracy, or perplexity = exp(mean cross-entropy) with the test text read as ONE stream,
state carried from window to window.

--hidden-sweep 64,128,256,512 trains each hidden size (every other option unchanged) and picks the
SMALLEST whose test metric reaches the best one within noise: accuracy within 2 standard errors of the
best (binomial, sqrt(p (1 - p) / n_test); over folds, the folds' standard deviation / sqrt(k)), perplexity
within 1% of the best (the seed-to-seed spread measured on these corpora is of that order).

--export PATH writes the trained model as fastlstm safetensors (tools/export_torch.py), with the
vocabulary as fastlstm's "tokenizer" metadata for text inputs ({"type": "word"|"char", "tokens": [...]})
and the text-cls labels as "labels" (JSON list, label of class i at i). With folds, fold 0's model.
--limit N keeps N training sequences, evenly spaced through the file (or the first N training tokens),
and N/4 of valid and test: a smoke run in seconds. --json PATH writes the results.

usage: torch_train.py --app fmnist|speech|sentiment|babi|word-lm|char-lm --data DIR
                      [--hidden 128] [--layers 1] [--embed 128] [--epochs 10] [--batch B] [--lr 1e-3]
                      [--dropout 0] [--bptt 35] [--vocab-size 10000] [--seed 1] [--threads N]
                      [--limit N] [--hidden-sweep 64,128,256,512] [--export MODEL] [--json OUT]
Run with /usr/bin/python3 (torch 1.13, numpy).
"""
import argparse
import collections
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import export_torch  # noqa: E402

KIND = {"fmnist": "features", "speech": "features", "sentiment": "text-cls", "babi": "text-cls",
        "word-lm": "lm", "char-lm": "lm"}


def die(msg):
    print("torch_train.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------ data
def build_vocab(token_lists, cap):
    """fastlstm's rule: <unk> = 0, then the cap-1 most frequent tokens, ties by first occurrence."""
    count, first = collections.Counter(), {}
    for toks in token_lists:
        for t in toks:
            if t == "<unk>":
                continue
            count[t] += 1
            first.setdefault(t, len(first))
    ranked = sorted(count, key=lambda t: (-count[t], first[t]))[:cap - 1]
    return ["<unk>"] + ranked


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        die("%s: cannot read (%s)" % (path, e))


def lm_tokens(text, char):
    if char:
        return list(text)
    out = []
    for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
        out += line.split() + ["<eos>"]
    return out


def read_tsv(path):
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        label, tab, text = line.partition("\t")
        if not tab or not label or not text.split():
            die("%s line %d: expected `label<TAB>text`" % (path, n))
        rows.append((label, text.split()))
    if not rows:
        die("%s: no examples" % path)
    return rows


def spread(seq, n):
    """n items of seq, evenly spaced (every class / task of a file sorted by it keeps some)."""
    if n >= len(seq):
        return seq
    idx = np.linspace(0, len(seq) - 1, n).round().astype(int)
    return seq[idx] if isinstance(seq, np.ndarray) else [seq[i] for i in idx]


def load_npy(d, split, limit):
    try:
        x, y = np.load(os.path.join(d, split + "_x.npy")), np.load(os.path.join(d, split + "_y.npy"))
    except (OSError, ValueError) as e:
        die("%s: cannot read %s_{x,y}.npy (%s)" % (d, split, e))
    if x.ndim != 3 or y.shape != (x.shape[0],):
        die("%s: %s_x.npy %s and %s_y.npy %s do not match (want (N, T, D) and (N,))" % (d, split, x.shape, split, y.shape))
    if limit:
        x, y = spread(x, limit), spread(y, limit)
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.int64))


# ------------------------------------------------------------------ model
class Net(torch.nn.Module):
    def __init__(self, vocab, inp, hidden, layers, out, dropout, per_step):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, inp) if vocab else None
        self.lstm = torch.nn.LSTM(inp, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.drop = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, out)
        self.per_step = per_step

    def forward(self, x, state=None, lengths=None):
        """x: (T, B) ids or (T, B, D); per step: ((T, B, out), state); else (B, out)."""
        if self.embedding is not None:
            x = self.embedding(x)
        if lengths is not None:
            x = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        y, state = self.lstm(x, state)
        if self.per_step:
            return self.head(self.drop(y)), state
        return self.head(self.drop(state[0][-1]))  # last layer's h at each sequence's last step


# ------------------------------------------------------------------ training
def run_classifier(a, kind, d, hidden):
    torch.manual_seed(a.seed)
    lim = a.limit
    if kind == "features":
        tr, va, te = (load_npy(d, s, lim if s == "train" else (lim // 4 if lim else 0)) for s in ("train", "valid", "test"))
        ncls = int(max(tr[1].max(), va[1].max(), te[1].max())) + 1
        vocab, labels, inp = None, None, tr[0].shape[2]
        sets = [(x, y, None) for x, y in (tr, va, te)]
    else:
        rows = [read_tsv(os.path.join(d, s + ".tsv")) for s in ("train", "valid", "test")]
        if lim:
            rows = [spread(rows[0], lim), spread(rows[1], max(1, lim // 4)), spread(rows[2], max(1, lim // 4))]
        vocab = build_vocab([t for _, t in rows[0]], a.vocab_size)
        ids = {t: i for i, t in enumerate(vocab)}
        labels = sorted({l for l, _ in rows[0]}, key=lambda l: (int(l), l) if l.lstrip("-").isdigit() else (0, l))
        lid = {l: i for i, l in enumerate(labels)}
        for s, r in zip(("valid", "test"), rows[1:]):  # such examples count as errors (class -1)
            unseen = {l for l, _ in r} - set(lid)
            if unseen:
                log(a, "warning: %s.tsv: label(s) %s never appear in train.tsv" % (s, " ".join(sorted(unseen)[:5])))
        ncls, inp = len(labels), a.embed
        sets = []
        for r in rows:
            T = max(len(t) for _, t in r)
            x = torch.zeros(len(r), T, dtype=torch.long)
            for i, (_, t) in enumerate(r):
                x[i, :len(t)] = torch.tensor([ids.get(w, 0) for w in t])
            sets.append((x, torch.tensor([lid.get(l, -1) for l, _ in r]), torch.tensor([len(t) for _, t in r])))
    m = Net(len(vocab) if vocab else 0, inp, hidden, a.layers, ncls, a.dropout, per_step=False)
    opt = torch.optim.Adam(m.parameters(), lr=a.lr)
    g = torch.Generator().manual_seed(a.seed)

    def batches(s, shuffle):
        x, y, n = s
        order = torch.randperm(len(y), generator=g) if shuffle else torch.arange(len(y))
        for i in range(0, len(y), a.batch if shuffle else 256):
            j = order[i:i + (a.batch if shuffle else 256)]
            xb = x[j].transpose(0, 1)
            if n is not None:
                xb = xb[:int(n[j].max())]
            yield xb, y[j], None if n is None else n[j]

    def accuracy(s):
        m.eval()
        right = 0
        with torch.no_grad():
            for xb, yb, nb in batches(s, False):
                right += int((m(xb, lengths=nb).argmax(1) == yb).sum())
        return right / len(s[1])

    best, best_sd = -1.0, None
    for ep in range(a.epochs):
        m.train()
        for xb, yb, nb in batches(sets[0], True):
            loss = torch.nn.functional.cross_entropy(m(xb, lengths=nb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        v = accuracy(sets[1])
        if v > best:
            best, best_sd = v, {k: t.clone() for k, t in m.state_dict().items()}
        log(a, "  epoch %d: loss %.4f, valid accuracy %.4f" % (ep + 1, float(loss), v))
    m.load_state_dict(best_sd)
    return m, {"valid": best, "test": accuracy(sets[2]), "n_test": len(sets[2][1]), "metric": "accuracy"}, \
        (vocab, labels)


def run_lm(a, d, hidden):
    torch.manual_seed(a.seed)
    char = a.app == "char-lm"
    toks = [lm_tokens(read_text(os.path.join(d, s + ".txt")), char) for s in ("train", "valid", "test")]
    if a.limit:
        toks = [toks[0][:a.limit], toks[1][:max(2, a.limit // 4)], toks[2][:max(2, a.limit // 4)]]
    vocab = build_vocab([toks[0]], a.vocab_size)
    ids = {t: i for i, t in enumerate(vocab)}
    data = [torch.tensor([ids.get(t, 0) for t in ts]) for ts in toks]
    if len(data[0]) < a.batch * (a.bptt + 1):
        die("%d training tokens are too few for --batch %d --bptt %d" % (len(data[0]), a.batch, a.bptt))
    V = len(vocab)
    m = Net(V, a.embed, hidden, a.layers, V, a.dropout, per_step=True)
    opt = torch.optim.Adam(m.parameters(), lr=a.lr)
    n = len(data[0]) // a.batch
    streams = data[0][:n * a.batch].view(a.batch, n).t().contiguous()  # (S, B)

    def perplexity(ids_, window=256):
        m.eval()
        s = ids_.view(-1, 1)
        state, nll = None, 0.0
        with torch.no_grad():
            for i in range(0, len(s) - 1, window):
                x, y = s[i:i + window], s[i + 1:i + 1 + window]
                x = x[:len(y)]
                out, state = m(x, state)
                nll += float(torch.nn.functional.cross_entropy(out.view(-1, V), y.view(-1), reduction="sum"))
        return math.exp(nll / (len(s) - 1))

    best, best_sd = float("inf"), None
    for ep in range(a.epochs):
        m.train()
        state = None
        for i in range(0, n - 1, a.bptt):
            x, y = streams[i:i + a.bptt], streams[i + 1:i + 1 + a.bptt]
            x = x[:len(y)]
            if state is not None:
                state = tuple(h.detach() for h in state)
            out, state = m(x, state)
            loss = torch.nn.functional.cross_entropy(out.view(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 5.0)
            opt.step()
        v = perplexity(data[1])
        if v < best:
            best, best_sd = v, {k: t.clone() for k, t in m.state_dict().items()}
        log(a, "  epoch %d: loss %.4f, valid perplexity %.2f" % (ep + 1, float(loss), v))
    m.load_state_dict(best_sd)
    return m, {"valid": best, "test": perplexity(data[2]), "n_test": len(data[2]) - 1, "metric": "perplexity"}, \
        (vocab, None)


def add_metadata(path, extra):
    """Rewrite a safetensors file with extra string entries in its __metadata__."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    header["__metadata__"].update(extra)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)
    os.replace(path + ".tmp", path)


def export(a, m, vocab, labels, path):
    export_torch.export(m.lstm, path, embedding=m.embedding, head=m.head,
                        head_kind="per_step" if m.per_step else "last_step")
    extra = {}
    if vocab:
        extra["tokenizer"] = json.dumps({"type": "char" if a.app == "char-lm" else "word", "tokens": vocab},
                                        separators=(",", ":"))
    if labels:
        extra["labels"] = json.dumps(labels)
    if extra:
        add_metadata(path, extra)


def log(a, msg):
    if not a.quiet:
        print(msg, file=sys.stderr)


def train_once(a, hidden, export_path=None):
    """{"test": metric, "folds": [...] when folds, ...} for one hidden size."""
    kind = KIND[a.app]
    folds = sorted(f for f in os.listdir(a.data) if f.startswith("fold_")) if kind == "text-cls" else []
    dirs = [os.path.join(a.data, f) for f in folds] or [a.data]
    res = []
    for i, d in enumerate(dirs):
        log(a, "%s hidden %d%s" % (a.app, hidden, " " + folds[i] if folds else ""))
        m, r, (vocab, labels) = run_lm(a, d, hidden) if kind == "lm" else run_classifier(a, kind, d, hidden)
        res.append(r)
        if export_path and i == 0:
            export(a, m, vocab, labels, export_path)
    out = {"hidden": hidden, "metric": res[0]["metric"], "test": float(np.mean([r["test"] for r in res])),
           "valid": float(np.mean([r["valid"] for r in res])), "n_test": sum(r["n_test"] for r in res)}
    if folds:
        out["folds"] = [r["test"] for r in res]
        out["std"] = float(np.std([r["test"] for r in res], ddof=1)) if len(res) > 1 else 0.0
    return out


def within_noise(r, best):
    """Does result r reach the best result within noise (the rule in the module doc)?"""
    if r["metric"] == "perplexity":
        return r["test"] <= best["test"] * 1.01
    if "folds" in best:
        se = best["std"] / math.sqrt(len(best["folds"]))
    else:
        p = best["test"]
        se = math.sqrt(max(p * (1 - p), 1e-12) / best["n_test"])
    return r["test"] >= best["test"] - 2 * se


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", required=True, choices=sorted(KIND))
    ap.add_argument("--data", required=True)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--bptt", type=int, default=35)
    ap.add_argument("--vocab-size", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--hidden-sweep", default=None)
    ap.add_argument("--export", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.data):
        die("--data %s: no such directory (prepare it with tools/apps_data.sh)" % a.data)
    a.batch = a.batch or (20 if KIND[a.app] == "lm" else 32)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.hidden_sweep:
        try:
            sizes = sorted(int(h) for h in a.hidden_sweep.split(","))
        except ValueError:
            die("--hidden-sweep takes comma-separated sizes, got %r" % a.hidden_sweep)
        tmp = (lambda h: "%s.h%d.tmp" % (a.export, h)) if a.export else (lambda h: None)
        runs = [train_once(a, h, tmp(h)) for h in sizes]
        lower = runs[0]["metric"] == "perplexity"
        best = min(runs, key=lambda r: r["test"]) if lower else max(runs, key=lambda r: r["test"])
        pick = next(r for r in runs if within_noise(r, best))
        for r in runs:
            print("%-9s hidden %4d: test %s %.4f%s" % (a.app, r["hidden"], r["metric"], r["test"],
                                                       "  <- smallest within noise of the best" if r is pick else ""))
        result = {"app": a.app, "sweep": runs, "chosen_hidden": pick["hidden"]}
        if a.export:  # keep the chosen size's model
            os.replace(tmp(pick["hidden"]), a.export)
            for h in sizes:
                if h != pick["hidden"]:
                    os.remove(tmp(h))
    else:
        r = train_once(a, a.hidden, a.export)
        print("%s hidden %d: test %s %.4f%s (valid %.4f)" % (a.app, a.hidden, r["metric"], r["test"],
              " +- %.4f over %d folds" % (r["std"], len(r["folds"])) if "folds" in r else "", r["valid"]))
        result = {"app": a.app, **r}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
