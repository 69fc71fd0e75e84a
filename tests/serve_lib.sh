# Helpers shared by the `fastlstm serve` shell tests (sourced after cli_lib.sh; needs $T and $FL_CLI).
# Servers run on ephemeral ports; every pid started is killed at exit (serve_cleanup, installed as the
# EXIT trap, also removes $T); every wait is bounded.
#   start NAME ARGS...  run `fastlstm serve ARGS --port 0` in the background, wait for its port in
#                       $T/NAME.port (its pid in $T/NAME.pid, output in $T/NAME.log and .err)
#   stop NAME           SIGTERM, wait for exit; require status 0 and the server's "draining" line
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
