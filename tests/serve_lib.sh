# Helpers shared by the `fastlstm serve` shell tests (sourced first; needs $FL_SOURCE_DIR, $FL_CLI).
# Makes the scratch directory $T, sources cli_lib.sh and sets PY. Servers run on ephemeral ports;
# every pid started is killed at exit (serve_cleanup, installed as the EXIT trap, also removes $T);
# every wait is bounded.
#   start NAME ARGS...  run `fastlstm serve ARGS --port 0` in the background, wait for its port in
#                       $T/NAME.port (its pid in $T/NAME.pid, output in $T/NAME.log and .err)
#   stop NAME           SIGTERM, wait for exit; require status 0 and the server's "draining" line
# It also writes $T/serve_client.py, the helpers of the Python clients (a client.py written to $T
# does `from serve_client import *`): check/fails, req/jreq, run_cli, close, expect_error.
T=$(mktemp -d)
# shellcheck source=tests/cli_lib.sh
. "$FL_SOURCE_DIR/tests/cli_lib.sh"
PY=${FL_PYTHON:-/usr/bin/python3}
PIDS=()
serve_cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap serve_cleanup EXIT

start() {
    local name=$1; shift
    "$FL_CLI" serve "$@" --port 0 >"$T/$name.log" 2>"$T/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    echo "$pid" >"$T/$name.pid"
    for _ in $(seq 1 300); do
        if grep -q "http://127.0.0.1:" "$T/$name.log" 2>/dev/null; then
            sed -n 's|.*http://127.0.0.1:\([0-9]*\).*|\1|p' "$T/$name.log" | head -1 >"$T/$name.port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    fail "server $name did not start"; cat "$T/$name.err"
    return 1
}

stop() {
    local pid; pid=$(cat "$T/$1.pid")
    kill -TERM "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then fail "server $1 ignored SIGTERM"; kill -KILL "$pid"; fi
    wait "$pid"; local rc=$?
    [ "$rc" -eq 0 ] || fail "server $1 exited $rc after SIGTERM: $(cat "$T/$1.err")"
    grep -q "draining" "$T/$1.log" || fail "server $1 did not report draining"
}

cat >"$T/serve_client.py" <<'PYEOF'
"""Helpers of the serve tests' clients, run as `client.py MODE PORT` with FL_CLI set."""
import http.client, json, os, subprocess, sys
import numpy as np

CLI, MODE, PORT = os.environ["FL_CLI"], sys.argv[1], int(sys.argv[2])
fails = []
def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what, flush=True)

def req(method, path, body=None, ctype="application/json", timeout=60):
    """(status, headers, raw body); a dict or list body is sent as JSON."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    c.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
    r = c.getresponse()
    data = r.read()
    hdr = dict(r.getheaders())
    c.close()
    return r.status, hdr, data

def jreq(method, path, body=None, timeout=60):
    """(status, headers, decoded JSON), or {"raw": text} for a body that is not JSON."""
    st, hdr, data = req(method, path, body, timeout=timeout)
    try:
        return st, hdr, json.loads(data)
    except ValueError:
        return st, hdr, {"raw": data.decode("latin1")}

def run_cli(model, x, state=False, lengths=None):
    """fastlstm run on x (and lengths); returns outputs (and h_n, c_n)."""
    np.save("in.npy", x)
    args = [CLI, "run", model, "--input", "in.npy", "--output", "out.npy"]
    if lengths is not None:
        np.save("len.npy", np.asarray(lengths, dtype=np.int32))
        args += ["--lengths", "len.npy"]
    if state:
        args += ["--state-out", "st"]
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    y = np.load("out.npy")
    return (y, np.load("st.h.npy"), np.load("st.c.npy")) if state else y

def close(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-6)

def expect_error(path, body, code, word, method="POST", ctype="application/json"):
    """The answer has status code and an error message naming word; returns its headers."""
    st, hdr, data = req(method, path, body, ctype)
    try:
        msg = json.loads(data)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        msg = "(no JSON error) " + data[:200].decode("latin1")
    check(st == code and word in msg, f"{method} {path}: want {code} naming '{word}', got {st}: {msg}")
    return hdr
PYEOF
