# Helper shared by the distributed shell tests (sourced after cli_lib.sh; needs $T and $PY).
#   same A B TOL   the float tensors of two safetensors files agree to TOL (max |a-b| / max |b|)
same() {
    "$PY" - "$1" "$2" "$3" <<'PYEOF' || fail "$1 and $2 differ"
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    return {k: np.frombuffer(d[v['data_offsets'][0]:v['data_offsets'][1]], dtype=np.float32)
            for k, v in h.items() if k != '__metadata__' and v['dtype'] == 'F32'}
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
assert a.keys() == b.keys() and a, "different tensors"
worst = max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)) for k in b)
print("max relative difference %.2e over %d tensors" % (worst, len(b)))
sys.exit(0 if worst <= tol else 1)
PYEOF
}
