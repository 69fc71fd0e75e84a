#!/usr/bin/env bash
# fastlstm serve on every kind of model and on mixed lengths: bidirectional layers, projections
# (LSTMP) and both, each over HTTP equal to `fastlstm run` (outputs, h_n and c_n); streams of a
# bidirectional model refused with a 400 naming the reason, streams of a projected model stepped
# frame by frame; "texts" on models that carry a tokenizer (word and char language models, a text
# classifier) equal to `fastlstm run` on the same token ids, tokenized independently here from the
# tokenizer stored in the model file; texts refused on a model without one. Requests of different
# lengths share one batch (a server that can only start a batch once 4 sequences are queued, checked
# through /metrics' batch-size histogram), each answered as `fastlstm run` answers it alone, and
# with --lengths. Servers run on ephemeral ports and are always killed; every wait is bounded; no
# timing thresholds.
set -u
# shellcheck source=tests/serve_lib.sh
. "$FL_SOURCE_DIR/tests/serve_lib.sh"
cd "$T" || exit 1

expect 0 "$FL_CLI" init --input 3 --hidden 5 --layers 2 --seed 1 -o feat.safetensors
expect 0 "$FL_CLI" init --input 3 --hidden 5 --layers 2 --bidirectional --seed 4 -o bi.safetensors
expect 0 "$FL_CLI" init --input 3 --hidden 6 --layers 2 --proj 4 --seed 5 -o proj.safetensors
expect 0 "$FL_CLI" init --vocab 11 --input 4 --hidden 6 --layers 2 --bidirectional --proj 3 --lm --seed 6 -o biproj.safetensors
expect 0 "$FL_CLI" init --input 3 --hidden 5 --layers 1 --bidirectional --classes 3 --seed 7 -o bicls.safetensors
expect 0 "$FL_CLI" init --vocab 11 --input 4 --hidden 6 --layers 1 --lm --seed 2 -o lm.safetensors
printf 'the cat sat on the mat\nthe dog sat\na cat ran on the mat\n' >corpus.txt
expect 0 "$FL_CLI" train --task lm --train corpus.txt --hidden 8 --embed 6 --max-steps 2 --batch 2 --bptt 4 --quiet -o txt.safetensors
expect 0 "$FL_CLI" train --task lm --train corpus.txt --level char --hidden 8 --embed 6 --max-steps 2 --batch 2 --bptt 4 --quiet -o chr.safetensors
printf 'pos\tthe cat sat\nneg\tthe dog ran\npos\ta cat on the mat\nneg\tdog\n' >lab.txt
expect 0 "$FL_CLI" train --task classify --train lab.txt --hidden 8 --embed 6 --max-steps 2 --batch 2 --quiet -o lab.safetensors

cat >"$T/client.py" <<'PYEOF'
import json, struct, sys, threading
import numpy as np
from serve_client import *  # check, fails, jreq, run_cli, close, expect_error (tests/serve_lib.sh)

def req(method, path, body=None, timeout=60):
    """(status, decoded JSON or {"raw": text})."""
    st, _, j = jreq(method, path, body, timeout)
    return st, j

def tokenizer(model):
    """The tokenizer JSON stored in the model file's safetensors metadata."""
    b = open(model, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(json.loads(b[8:8 + n])["__metadata__"]["tokenizer"])

def tokenize(text, tok):
    """An independent tokenizer: word mode splits on white space, "<eos>" at each newline; char mode
    takes code points; unknown -> 0 (<unk>). ASCII white space only, as the library."""
    idx = {t: i for i, t in enumerate(tok["tokens"])}
    if tok["type"] == "char":
        return [idx.get(ch, 0) for ch in text]
    ids, lines = [], text.split("\n")
    for k, line in enumerate(lines):
        ids += [idx.get(w, 0) for w in line.replace("\t", " ").split(" ") if w]
        if k + 1 < len(lines):
            ids.append(idx.get("<eos>", 0))
    return ids

rng = np.random.default_rng(11)

def predict_matches(name, x, what):
    """One predict with state against fastlstm run on the same x."""
    y, h, c = run_cli(name + ".safetensors", x, state=True)
    st, j = req("POST", f"/v1/models/{name}/predict", {"inputs": x.tolist(), "state": True})
    check(st == 200 and close(j.get("outputs"), y), f"{what}: outputs equal fastlstm run ({st})")
    check(st == 200 and close(j.get("h_n"), h) and close(j.get("c_n"), c), f"{what}: h_n, c_n equal fastlstm run")

def ragged_matches(name, rows, what):
    """Ragged rows in one request: each row as fastlstm run on it alone, and as run with --lengths."""
    st, j = req("POST", f"/v1/models/{name}/predict", {"inputs": [r.tolist() for r in rows], "state": True})
    check(st == 200, f"{what}: ragged predict answered ({st} {j})")
    if st != 200:
        return
    out, hn, cn = np.asarray(j["outputs"]), np.asarray(j["h_n"]), np.asarray(j["c_n"])
    Tm = max(len(r) for r in rows)
    for b, r in enumerate(rows):
        y1, h1, c1 = run_cli(name + ".safetensors", np.asarray(r)[None], state=True)
        if out.ndim == 3:
            check(close(out[b, :len(r)], y1[0]) and not out[b, len(r):].any(), f"{what}: row {b} outputs as run alone")
        else:
            check(close(out[b], y1[0]), f"{what}: row {b} last-step output as run alone")
        check(close(hn[:, b], h1[:, 0]) and close(cn[:, b], c1[:, 0]), f"{what}: row {b} states as run alone")
    pad = np.zeros((len(rows), Tm) + np.asarray(rows[0]).shape[1:], dtype=np.asarray(rows[0]).dtype)
    for b, r in enumerate(rows):
        pad[b, :len(r)] = r
    y, h, c = run_cli(name + ".safetensors", pad, state=True, lengths=[len(r) for r in rows])
    check(close(out, y) and close(hn, h) and close(cn, c), f"{what}: equal fastlstm run --lengths")

def main():
    st, j = req("GET", "/v1/models")
    models = {m["name"]: m for m in j.get("models", [])}
    check(models.get("bi", {}).get("bidirectional") is True and models["bi"].get("streams") is False,
          "/v1/models: bi is bidirectional and does not stream")
    check(models.get("proj", {}).get("proj") == 4 and models["proj"].get("streams") is True, "/v1/models: proj 4")

    # Bidirectional, projected, both: outputs and states against fastlstm run, ragged rows too.
    for name, D in (("bi", 3), ("proj", 3), ("bicls", 3)):
        predict_matches(name, rng.standard_normal((3, 6, D)).astype(np.float32), name)
        ragged_matches(name, [rng.standard_normal((n, D)).astype(np.float32) for n in (4, 1, 6)], name + " ragged")
    ids = rng.integers(0, 11, (2, 5)).astype(np.int32)
    predict_matches("biproj", ids, "biproj (tokens, per-step head)")
    ragged_matches("biproj", [rng.integers(0, 11, n).astype(np.int32) for n in (3, 5)], "biproj ragged")

    # Streams: refused for bidirectional models; a projected model steps frame by frame as run.
    expect_error("/v1/models/bi/streams", None, 400, "bidirectional")
    expect_error("/v1/models/biproj/streams", None, 400, "whole sequence")
    x = rng.standard_normal((1, 5, 3)).astype(np.float32)
    y = run_cli("proj.safetensors", x)
    st, j = req("POST", "/v1/models/proj/streams")
    sid, outs = j.get("id", ""), []
    for t in range(3):
        outs += req("POST", f"/v1/streams/{sid}/step", {"inputs": [x[0, t].tolist()]})[1].get("outputs", [])
    outs += req("POST", f"/v1/streams/{sid}/step", {"inputs": x[0, 3:].tolist()})[1].get("outputs", [])
    check(close(outs, y[0]), "proj stream stepped frame by frame equals fastlstm run")
    req("DELETE", f"/v1/streams/{sid}")

    # Texts: tokenized as the model's tokenizer says, answered as fastlstm run on those ids.
    for name, texts in (("txt", ["the cat sat", "a dog ran on\nthe zebra mat", "mat"]),
                        ("chr", ["the cat", "d\u00e9j\u00e0 on\n"]),
                        ("lab", ["the cat sat on the mat", "dog"])):
        tok = tokenizer(name + ".safetensors")
        want = [tokenize(t, tok) for t in texts]
        st, j = req("POST", f"/v1/models/{name}/predict", {"texts": texts, "state": True})
        check(st == 200 and j.get("tokens") == want, f"{name}: texts tokenized as the stored tokenizer: {j.get('tokens')} vs {want}")
        if st != 200:
            continue
        out = np.asarray(j["outputs"])
        for b, ids in enumerate(want):
            y1, h1, _ = run_cli(name + ".safetensors", np.asarray([ids], dtype=np.int32), state=True)
            if out.ndim == 3:
                check(close(out[b, :len(ids)], y1[0]) and not out[b, len(ids):].any(), f"{name}: text {b} as run")
            else:
                check(close(out[b], y1[0]), f"{name}: text {b} (last-step head) as run")
            check(close(np.asarray(j["h_n"])[:, b], h1[:, 0]), f"{name}: text {b} h_n as run")
        # The same ids as "inputs" get the same answer.
        st2, j2 = req("POST", f"/v1/models/{name}/predict", {"inputs": want, "state": True})
        check(st2 == 200 and close(j2["outputs"], out), f"{name}: texts answered as their ids in \"inputs\"")
    # A stream fed texts: the same as run on the concatenated ids.
    tok = tokenizer("txt.safetensors")
    st, j = req("POST", "/v1/models/txt/streams")
    sid = j.get("id", "")
    o1 = req("POST", f"/v1/streams/{sid}/step", {"texts": ["the cat"]})[1]
    o2 = req("POST", f"/v1/streams/{sid}/step", {"texts": ["sat on"]})[1]
    ids = tokenize("the cat", tok) + tokenize("sat on", tok)
    check(o1.get("tokens") == tokenize("the cat", tok), f"stream step echoes its tokens: {o1}")
    y = run_cli("txt.safetensors", np.asarray([ids], dtype=np.int32))
    check(close(o1.get("outputs", []) + o2.get("outputs", []), y[0]), "text stream equals fastlstm run")
    req("DELETE", f"/v1/streams/{sid}")
    expect_error("/v1/models/lm/predict", {"texts": ["the cat"]}, 400, "no tokenizer")
    expect_error("/v1/models/feat/predict", {"texts": ["the cat"]}, 400, "no tokenizer")
    expect_error("/v1/models/txt/predict", {"texts": ["  "]}, 400, "no tokens")
    expect_error("/v1/models/txt/predict", {"texts": ["the"], "inputs": [[1]]}, 400, "alone")
    expect_error("/v1/models/txt/predict", {"texts": ["the " * 50]}, 413, "sequence length")

def metrics():
    text = req("GET", "/metrics")[1].get("raw", "")
    vals = {}
    for line in text.splitlines():
        if line.startswith("fastlstm_batch_size"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    return vals

def batch():
    """Server with --threads 1 --max-batch 4 and a 10 s --max-delay-us: a batch starts only when 4
    sequences are queued (or after 10 s). Four clients with lengths 2, 7, 4, 5 at once: one batch of 4,
    each answered as fastlstm run on it alone; then the same with lengths inside the requests."""
    for rnd, explicit in ((0, False), (1, True)):
        before = metrics()
        xs = [rng.standard_normal((1, n, 3)).astype(np.float32) for n in (2, 7, 4, 5)]
        lens = [n - 1 if explicit and n > 1 else n for n in (2, 7, 4, 5)]
        res = {}
        def client(k):
            body = {"inputs": xs[k].tolist(), "state": True}
            if explicit:
                body["lengths"] = [lens[k]]
            res[k] = req("POST", "/v1/models/feat/predict", body, timeout=120)
        th = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        [t.start() for t in th]
        [t.join(150) for t in th]
        after = metrics()
        d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        check(d.get("fastlstm_batch_size_count") == 1 and d.get("fastlstm_batch_size_sum") == 4 and
              d.get('fastlstm_batch_size_bucket{le="2"}') == 0 and d.get('fastlstm_batch_size_bucket{le="4"}') == 1,
              f"round {rnd}: four requests of lengths {lens} ran as one batch of 4: {d}")
        for k in range(4):
            st, j = res.get(k, (0, {}))
            y, h, c = run_cli("feat.safetensors", xs[k], state=True, lengths=[lens[k]] if explicit else None)
            check(st == 200 and close(j.get("outputs"), y) and close(j.get("h_n"), h) and close(j.get("c_n"), c),
                  f"round {rnd}: request {k} (length {lens[k]}) in a mixed batch equals fastlstm run alone ({st})")

{"main": main, "batch": batch}[MODE]()
sys.exit(1 if fails else 0)
PYEOF

if start main feat.safetensors bi.safetensors proj.safetensors biproj.safetensors bicls.safetensors lm.safetensors \
        txt.safetensors chr.safetensors lab.safetensors --threads 2 --max-batch 8 --max-delay-us 2000 --max-seq 40; then
    timeout 500 "$PY" "$T/client.py" main "$(cat "$T/main.port")" >"$T/out" 2>"$T/err" || fail "client (main)"
    stop main
fi
if start batch feat.safetensors --threads 1 --max-batch 4 --max-delay-us 10000000; then
    timeout 300 "$PY" "$T/client.py" batch "$(cat "$T/batch.port")" >"$T/out" 2>"$T/err" || fail "client (batch)"
    stop batch
fi

[ -n "${FL_SERVE_VERBOSE:-}" ] && cat "$T/out" "$T/err"
if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "test_serve_models: all passed"
