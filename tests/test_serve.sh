#!/usr/bin/env bash
# fastlstm serve over loopback: outputs equal `fastlstm run`'s (single, batched, ragged, .npy, token
# and feature models, every head, streams stepped frame by frame), dozens of concurrent clients, every
# refusal with its status and a message naming the problem, slow and vanishing clients, queue-full
# 503 with Retry-After, queued work of a client that hung up dropped, SIGTERM draining, the latency
# objective overriding a long batching delay, idle streams expiring. Servers run on
# ephemeral ports and are always killed at the end; every wait is bounded. No timing thresholds.
set -u
# shellcheck source=tests/serve_lib.sh
. "$FL_SOURCE_DIR/tests/serve_lib.sh"
cd "$T" || exit 1

expect 0 "$FL_CLI" serve --help
has out "/v1/models/NAME/predict"
expect 2 "$FL_CLI" serve
has err "MODEL"
expect 2 "$FL_CLI" serve x.safetensors --max-batch 0
has err "--max-batch"

expect 0 "$FL_CLI" init --input 3 --hidden 5 --layers 2 --seed 1 -o feat.safetensors
expect 0 "$FL_CLI" init --input 4 --hidden 6 --layers 1 --vocab 11 --lm --seed 2 -o lm.safetensors
expect 0 "$FL_CLI" init --input 3 --hidden 4 --layers 2 --classes 3 --seed 3 -o cls.safetensors
expect 1 "$FL_CLI" serve feat.safetensors feat.safetensors --port 0
has err "two models named 'feat'"
expect 1 "$FL_CLI" serve missing.safetensors --port 0
has err "missing.safetensors"

cat >"$T/client.py" <<'PYEOF'
import json, socket, sys, threading, time
import numpy as np
from serve_client import *  # check, fails, req, jreq, run_cli, close, expect_error (tests/serve_lib.sh)

rng = np.random.default_rng(7)

def main():
    st, _, j = jreq("GET", "/healthz")
    check(st == 200 and j.get("status") == "ok", "healthz")
    st, _, j = jreq("GET", "/v1/models")
    names = sorted(m["name"] for m in j["models"])
    check(st == 200 and names == ["cls", "feat", "lm"], f"models listed: {names}")
    feat = [m for m in j["models"] if m["name"] == "feat"][0]
    check(feat["hidden"] == 5 and feat["layers"] == 2 and len(feat["plan"]) == 4, "feat described")

    # Single and batched predicts against fastlstm run, with states.
    for B, T in ((1, 6), (4, 9)):
        x = rng.standard_normal((B, T, 3)).astype(np.float32)
        y, h, c = run_cli("feat.safetensors", x, state=True)
        st, _, j = jreq("POST", "/v1/models/feat/predict", {"inputs": x.tolist(), "state": True})
        check(st == 200 and close(j["outputs"], y), f"feat B={B} outputs equal fastlstm run")
        check(st == 200 and close(j["h_n"], h) and close(j["c_n"], c), f"feat B={B} h_n, c_n equal fastlstm run")
    ids = rng.integers(0, 11, (3, 7)).astype(np.int32)
    y = run_cli("lm.safetensors", ids)
    st, _, j = jreq("POST", "/v1/models/lm/predict", {"inputs": ids.tolist()})
    check(st == 200 and close(j["outputs"], y), "lm (token ids, per-step head) equals fastlstm run")
    x = rng.standard_normal((5, 4, 3)).astype(np.float32)
    y = run_cli("cls.safetensors", x)
    st, _, j = jreq("POST", "/v1/models/cls/predict", {"inputs": x.tolist()})
    check(st == 200 and close(j["outputs"], y), "cls (last-step head) equals fastlstm run")
    # .npy in, .npy out.
    np.save("body.npy", x)
    st, hdr, data = req("POST", "/v1/models/cls/predict", open("body.npy", "rb").read(), "application/x-npy")
    open("ans.npy", "wb").write(data)
    check(st == 200 and hdr.get("Content-Type") == "application/x-npy" and close(np.load("ans.npy"), y),
          ".npy body answered in .npy equal to fastlstm run")
    # Ragged rows and explicit lengths: each sequence as if run alone, zeros past its length.
    rows = [rng.standard_normal((n, 3)).astype(np.float32) for n in (5, 2, 7)]
    st, _, j = jreq("POST", "/v1/models/feat/predict", {"inputs": [r.tolist() for r in rows], "state": True})
    check(st == 200 and np.asarray(j["outputs"]).shape == (3, 7, 5), "ragged batch padded to the longest")
    for b, r in enumerate(rows):
        yb, hb, cb = run_cli("feat.safetensors", r[None], state=True)
        out = np.asarray(j["outputs"])[b]
        check(close(out[:len(r)], yb[0]) and not out[len(r):].any(), f"ragged row {b} equals fastlstm run")
        check(close(np.asarray(j["h_n"])[:, b], hb[:, 0]), f"ragged row {b} h_n equals fastlstm run")
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    st, _, j = jreq("POST", "/v1/models/cls/predict", {"inputs": x.tolist(), "lengths": [6, 3]})
    check(st == 200 and close(j["outputs"][1], run_cli("cls.safetensors", x[1:2, :3])[0]),
          "lengths: a last-step head reads each sequence's own last step")

    # Streams stepped frame by frame (and two frames at once) equal a whole run.
    x = rng.standard_normal((1, 6, 3)).astype(np.float32)
    y = run_cli("feat.safetensors", x)
    st, _, j = jreq("POST", "/v1/models/feat/streams")
    sid = j.get("id", "")
    check(st == 200 and sid, "stream opened")
    outs = []
    for t in range(4):
        st, _, j = jreq("POST", f"/v1/streams/{sid}/step", {"inputs": [x[0, t].tolist()]})
        check(st == 200, f"step {t}: {st}")
        outs += j.get("outputs", [])
    st, _, j = jreq("POST", f"/v1/streams/{sid}/step", {"inputs": x[0, 4:].tolist()})
    outs += j.get("outputs", [])
    check(close(outs, y[0]), "stream stepped frame by frame equals fastlstm run")
    ids = rng.integers(0, 11, (1, 5)).astype(np.int32)
    y = run_cli("lm.safetensors", ids)
    st, _, j = jreq("POST", "/v1/models/lm/streams")
    lid = j["id"]
    outs = [jreq("POST", f"/v1/streams/{lid}/step", {"inputs": [int(t)]})[2]["outputs"][0] for t in ids[0]]
    check(close(outs, y[0]), "token stream stepped one id at a time equals fastlstm run")
    # Many streams stepped at once are batched together; each keeps its own state.
    xs = rng.standard_normal((3, 4, 3)).astype(np.float32)
    ys = run_cli("feat.safetensors", xs)
    st, _, j = jreq("POST", "/v1/models/feat/streams")
    sids = [sid, lid, j["id"]]
    check(st == 200, "third stream opened")
    expect_error("/v1/models/feat/streams", None, 429, "streams")
    for s in (sid, lid):
        check(jreq("DELETE", f"/v1/streams/{s}")[0] == 200, "stream closed")
    sids = [j["id"]] + [jreq("POST", "/v1/models/feat/streams")[2]["id"] for _ in range(2)]
    res = {}
    def stepper(i):
        o = []
        for t in range(4):
            o += jreq("POST", f"/v1/streams/{sids[i]}/step", {"inputs": [xs[i, t].tolist()]})[2].get("outputs", [])
        res[i] = o
    th = [threading.Thread(target=stepper, args=(i,)) for i in range(3)]
    [t.start() for t in th]
    [t.join(120) for t in th]
    for i in range(3):
        check(close(res.get(i, []), ys[i]), f"concurrent stream {i} equals fastlstm run")
    expect_error(f"/v1/streams/{sid}/step", {"inputs": [[0, 0, 0]]}, 404, "no stream")
    expect_error(f"/v1/streams/{sid}", None, 404, "no stream", method="DELETE")
    expect_error(f"/v1/streams/{sids[0]}/step", {"inputs": [[0, 0]]}, 400, "features")
    for s in sids:
        jreq("DELETE", f"/v1/streams/{s}")

    # Dozens of concurrent clients, each checked against its reference.
    pool = [rng.standard_normal((1 + k % 2, 5, 3)).astype(np.float32) for k in range(4)]
    refs = [run_cli("feat.safetensors", p) for p in pool]
    bad = []
    def client(k):
        for r in range(3):
            i = (k + r) % 4
            try:
                st, _, j = jreq("POST", "/v1/models/feat/predict", {"inputs": pool[i].tolist()})
                if st != 200 or not close(j["outputs"], refs[i]):
                    bad.append((k, r, st))
            except Exception as e:
                bad.append((k, r, repr(e)))
    th = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    [t.start() for t in th]
    [t.join(300) for t in th]
    check(not bad and not any(t.is_alive() for t in th), f"32 concurrent clients x 3 requests: failures {bad[:5]}")

    # Refusals, each with its status and a message naming the problem.
    P = "/v1/models/feat/predict"
    expect_error(P, '{"inputs": [[[1,2,3]]', 400, "malformed JSON")
    expect_error(P, '{"inputs": [[[NaN,2,3]]]}', 400, "malformed JSON")
    expect_error(P, '{"inputs": [[[1e999,2,3]]]}', 400, "not a finite")
    expect_error(P, {"inputs": [[[1, 2]]]}, 400, "features")
    expect_error(P, {"inputs": [[1, 2, 3]]}, 400, "features")
    expect_error(P, {"inputs": [[["a", 2, 3]]]}, 400, "number")
    expect_error(P, {"inputs": []}, 400, "empty")
    expect_error(P, {"nothing": 1}, 400, "inputs")
    expect_error(P, {"inputs": [[[1, 2, 3]]], "lengths": [2]}, 400, "lengths[0]")
    expect_error(P, {"inputs": [[[0, 0, 0]] * 41]}, 413, "sequence length")
    expect_error(P, {"inputs": [[[0, 0, 0]]] * 9}, 413, "batch")
    expect_error(P, "[" + " " * 200000 + "]", 413, "body")
    expect_error("/v1/models/lm/predict", {"inputs": [[1, 11]]}, 400, "token id")
    expect_error("/v1/models/lm/predict", {"inputs": [[1.5]]}, 400, "token id")
    expect_error("/v1/models/lm/predict", {"texts": ["hello"]}, 400, "no tokenizer")
    expect_error("/v1/models/nope/predict", {"inputs": [[[1, 2, 3]]]}, 404, "nope")
    expect_error(P, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'", 400, ".npy", ctype="application/x-npy")
    expect_error("/v1/nothing", None, 404, "no such endpoint", method="GET")
    expect_error(P, None, 405, "POST", method="GET")

    # A slow client that never finishes its request, and one that disconnects mid-body: others are
    # served meanwhile, and the slow one is cut off by --client-timeout-s.
    slow = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    slow.sendall(b"POST /v1/models/feat/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp")
    gone = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    gone.sendall(b"POST /v1/models/feat/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\": [[")
    gone.close()
    st, _, j = jreq("POST", P, {"inputs": pool[0].tolist()})
    check(st == 200 and close(j["outputs"], refs[0]), "served while a slow client stalls")
    slow.settimeout(30)
    try:
        closed = slow.recv(100) == b""
    except (socket.timeout, ConnectionError):
        closed = True
    check(closed, "the slow client's connection is closed after --client-timeout-s")
    st, _, j = jreq("GET", "/metrics")
    text = j.get("raw", "")
    for name in ("fastlstm_requests_total{endpoint=\"predict\",code=\"200\"}", "fastlstm_errors_total",
                 "fastlstm_request_duration_seconds_bucket", "fastlstm_batch_size_bucket", "fastlstm_queue_depth",
                 "fastlstm_streams"):
        check(name in text, f"/metrics has {name}")

def metric(name):
    text = req("GET", "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None

def wait_for(cond, what, limit=60):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    check(False, what)
    return False

def queue():
    """Server started with --queue 3 --max-batch 8 and a long --max-delay-us: work waits in the queue."""
    # A client that hangs up while its request is queued: its work is dropped.
    s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    body = json.dumps({"inputs": [[[1, 2, 3]]]}).encode()
    s.sendall(b"POST /v1/models/feat/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    wait_for(lambda: metric("fastlstm_queue_depth") == 1, "the request is queued")
    s.close()
    wait_for(lambda: metric("fastlstm_cancelled_total") == 1 and metric("fastlstm_queue_depth") == 0,
             "a client that hung up has its queued work dropped")
    # Fill the queue (2 of 3), then a request of 2 more is refused with 503 and Retry-After.
    x = rng.standard_normal((2, 3, 3)).astype(np.float32)
    y = run_cli("feat.safetensors", x)
    out = {}
    def waiter():
        out["r"] = jreq("POST", "/v1/models/feat/predict", {"inputs": x.tolist()})
    th = threading.Thread(target=waiter)
    th.start()
    wait_for(lambda: metric("fastlstm_queue_depth") == 2, "two sequences queued")
    hdr = expect_error("/v1/models/feat/predict", {"inputs": x.tolist()}, 503, "queue full")
    check(hdr.get("Retry-After") == "1", f"503 carries Retry-After: {hdr}")
    print("READY", flush=True)          # the shell now sends SIGTERM: the queued request must be answered
    th.join(120)
    st, _, j = out.get("r", (0, {}, {}))
    check(st == 200 and close(j.get("outputs"), y), f"queued request answered while draining: {st}")

def slo():
    """Server started with --max-delay-us 30 s, --slo-ms 100 and --stream-idle-s 1: the batcher must
    not hold a request anywhere near the delay (one waiting it out would pass the client's 20 s
    timeout), and idle streams go."""
    x = rng.standard_normal((1, 4, 3)).astype(np.float32)
    y = run_cli("feat.safetensors", x)
    for k in range(3):
        try:
            st, _, data = req("POST", "/v1/models/feat/predict", json.dumps({"inputs": x.tolist()}), timeout=20)
            check(st == 200 and close(json.loads(data)["outputs"], y), f"request {k} under --slo-ms answered")
        except socket.timeout:
            check(False, f"request {k} under --slo-ms waited out --max-delay-us")
    # Streams idle past --stream-idle-s expire.
    st, _, j = jreq("POST", "/v1/models/feat/streams")
    check(st == 200 and metric("fastlstm_streams") == 1, "a stream is open")
    wait_for(lambda: metric("fastlstm_streams") == 0, "an idle stream expires")
    expect_error(f"/v1/streams/{j['id']}/step", {"inputs": [[0, 0, 0]]}, 404, "expired")

{"main": main, "queue": queue, "slo": slo}[MODE]()
sys.exit(1 if fails else 0)
PYEOF

if start main feat.safetensors lm.safetensors cls.safetensors --threads 2 --max-batch 8 --max-delay-us 5000 \
        --queue 64 --max-seq 40 --max-body 100000 --max-streams 3 --client-timeout-s 2; then
    timeout 500 "$PY" "$T/client.py" main "$(cat "$T/main.port")" >"$T/out" 2>"$T/err" || fail "client (main)"
    kill -0 "$(cat "$T/main.pid")" 2>/dev/null || fail "server died: $(cat "$T/main.err")"
    # The load generator (built with the benchmarks): 20 requests on schedule, every one answered.
    if [ -x "${FL_BINARY_DIR:-}/serve_loadgen" ]; then
        echo '{"inputs": [[[1, 2, 3], [4, 5, 6]]]}' >"$T/body.json"
        expect 0 "$FL_BINARY_DIR/serve_loadgen" --port "$(cat "$T/main.port")" --path /v1/models/feat/predict \
            --body "$T/body.json" --rate 20 --duration 1 --drain 30
        has out "ok=20 "
        has out "err4xx=0 err5xx=0 connfail=0 unanswered=0"
    fi
    stop main
fi

if start queue feat.safetensors --threads 1 --max-batch 8 --max-delay-us 10000000 --queue 3; then
    timeout 300 "$PY" "$T/client.py" queue "$(cat "$T/queue.port")" >"$T/out" 2>"$T/err" &
    cpid=$!
    for _ in $(seq 1 600); do grep -q READY "$T/out" && break; kill -0 $cpid 2>/dev/null || break; sleep 0.1; done
    stop queue
    wait $cpid || fail "client (queue)"
fi

[ -n "${FL_SERVE_VERBOSE:-}" ] && cat "$T/out" "$T/err"
if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "test_serve: all passed"
