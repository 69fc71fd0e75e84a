# Helpers shared by the shell tests (sourced).
#   $T                a scratch directory: made here and removed on exit unless the test set T itself
#                     (a test with more to do on exit sets its own trap, removing $T there too)
#   fail MSG          record a failure, showing the last command's stdout and stderr
#   expect RC CMD...  run CMD (at most 60 s: a hang is a failure, not a stuck suite), require status RC
#   has FILE TEXT     $T/FILE (out or err) contains TEXT
#   set_meta SRC DST KEY VALUE  copy safetensors file SRC to DST with __metadata__ KEY set to VALUE
#                     (the header re-padded; needs $PY, a Python: hand-edited model files)
if [ -z "${T:-}" ]; then
    T=$(mktemp -d)
    trap 'rm -rf "$T"' EXIT
fi
failures=0

fail() {
    echo "FAIL: $*"
    echo "--- stdout"; cat "$T/out" 2>/dev/null
    echo "--- stderr"; cat "$T/err" 2>/dev/null
    failures=$((failures + 1))
}

expect() {
    local want=$1; shift
    timeout 60 "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ "$rc" -eq 124 ]; then fail "'$*' hung (killed after 60 s)"; return 1; fi
    if [ "$rc" -ne "$want" ]; then fail "'$*' exited $rc, want $want"; return 1; fi
    return 0
}

has() {
    if ! grep -qF -- "$2" "$T/$1"; then fail "$1 lacks '$2'"; fi
}

set_meta() {
    "${PY:-/usr/bin/python3}" - "$@" <<'PYEOF'
import json, struct, sys
src, dst, key, val = sys.argv[1:5]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"][key] = val
t = json.dumps(h).encode()
t += b" " * ((8 - len(t) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PYEOF
}
