#!/usr/bin/env bash
# The Python package (python/fastlstm) against this build's libfastlstm.so: runs its pytest suite
# (python/tests: outputs against PyTorch, torch round trips, errors, training, planning, no growth
# over 10,000 calls) with Debian's /usr/bin/python3, then the package as `cmake --install` lays it
# out (when install rules are configured) and as `pip install --no-build-isolation --no-index`
# builds it, each importing and running a model.
# Environment (set by CTest): FASTLSTM_LIB = the build's libfastlstm.so, FL_PYTHON, FL_BINARY_DIR.
# Under AddressSanitizer (the library links libasan) the interpreter is started with the ASan and
# UBSan runtimes preloaded (an instrumented .so cannot be dlopen'ed into an uninstrumented python
# otherwise), leak detection off (python and torch leave unreachable blocks at exit by design, in
# stacks that also hold every fastlstm call, so no suppression can separate them; the release run's
# RSS test covers leaks), the RSS tests skipped (ASan's quarantine keeps freed memory resident), and
# the install checks left to the release run. Exit 77 (skipped) when no runtime can be preloaded.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${FL_PYTHON:-/usr/bin/python3}
LIB=${FASTLSTM_LIB:-${FL_BINARY_DIR:-$ROOT/build}/libfastlstm.so}
. "$(dirname "$0")/cli_lib.sh"

if [ ! -f "$LIB" ]; then echo "FAIL: no library at $LIB"; exit 1; fi
asan=0
if ldd "$LIB" 2>/dev/null | grep -q 'libasan'; then
    asan=1
    rt=""
    for r in libasan libubsan; do
        f=$(ldd "$LIB" | awk -v r="$r" '$1 ~ "^"r"\\.so" {print $3}')
        [ -n "$f" ] && [ -f "$f" ] && rt="$rt $f"
    done
    case "$rt" in
        *libasan*) ;;
        *) echo "SKIP: $LIB is built with AddressSanitizer and its runtime cannot be preloaded"; exit 77 ;;
    esac
fi
for m in numpy torch pytest; do
    "$PY" -c "import $m" 2>/dev/null || { echo "FAIL: $PY lacks $m (bash scripts/setup.sh --deps)"; exit 1; }
done
export FASTLSTM_LIB=$LIB OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# 1. The suite, on the package in the source tree. -p no:cacheprovider: no .pytest_cache in the tree.
if [ "$asan" = 1 ]; then
    (cd "$ROOT" && LD_PRELOAD="${rt# }" FASTLSTM_TEST_ASAN=1 ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
        timeout 300 "$PY" -m pytest -q -p no:cacheprovider python/tests) || fail "pytest python/tests (ASan)"
    if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
    echo "test_python: all passed under ASan/UBSan (install checks: release build)"
    exit 0
fi
(cd "$ROOT" && timeout 300 "$PY" -m pytest -q -p no:cacheprovider python/tests) || fail "pytest python/tests"

# A model file for the smoke runs below.
cat >"$T/smoke.py" <<'PY'
import sys, numpy as np, fastlstm
assert fastlstm.__file__.startswith(sys.argv[1]), (fastlstm.__file__, sys.argv[1])
lib = fastlstm._lib.get().path
assert len(sys.argv) < 3 or lib.startswith(sys.argv[2]), (lib, sys.argv[2])
m = fastlstm.init(4, 8, 2, head="last_step", head_out=3, seed=1)
y, (h, c) = m.run(np.ones((2, 5, 4), np.float32))
assert y.shape == (2, 3) and h.shape == (2, 2, 8), (y.shape, h.shape)
print("ok", fastlstm.version())
PY

# 2. pip, offline: nothing may come from a package index. From a copy (pip builds in the tree it is
#    given), with tools/ beside it so that the package's link to tools/export_torch.py resolves.
mkdir -p "$T/src" && cp -r "$ROOT/python" "$ROOT/tools" "$T/src/" && rm -rf "$T/src/python/tests"
if expect 0 timeout 120 "$PY" -m pip install --no-build-isolation --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --target "$T/pip" "$T/src/python"; then
    [ -f "$T/pip/fastlstm/_export_torch.py" ] && [ ! -L "$T/pip/fastlstm/_export_torch.py" ] \
        || fail "pip install: fastlstm/_export_torch.py missing or a link"
    expect 0 env PYTHONPATH="$T/pip" "$PY" "$T/smoke.py" "$T/pip/" && has out "ok "
fi

# 3. cmake --install into a scratch prefix: the package finds the installed library by itself.
if [ -n "${FL_BINARY_DIR:-}" ] && grep -q '^FL_BUILD_PYTHON:BOOL=ON' "$FL_BINARY_DIR/CMakeCache.txt" 2>/dev/null; then
    if expect 0 cmake --install "$FL_BINARY_DIR" --prefix "$T/prefix"; then
        pkg=$(find "$T/prefix" -path '*-packages/fastlstm/__init__.py' | head -1)
        if [ -z "$pkg" ]; then
            fail "cmake --install put no fastlstm package under the prefix"
        else
            dir=$(dirname "$(dirname "$pkg")")
            # without FASTLSTM_LIB: the package finds the installed library through _install.py
            expect 0 env -u FASTLSTM_LIB PYTHONPATH="$dir" "$PY" "$T/smoke.py" "$dir/" "$T/prefix/" && has out "ok "
        fi
    fi
fi

if [ "$failures" -ne 0 ]; then echo "$failures failure(s)"; exit 1; fi
echo "test_python: all passed"
