# Helpers shared by the distributed shell tests (sourced; same needs $T, $PY and cli_lib.sh).
#   mpi_test_setup NAME  the start of an mpirun test: CLI, PY, MPIRUN (a FAIL and exit 1 without it),
#                        a scratch $T (/tmp/fl_test_NAME_*) removed at exit, Open MPI settings for
#                        containers, cli_lib.sh sourced, MPI2 = mpirun -np 2 (an array)
#   same A B TOL         the float tensors of two safetensors files agree to TOL (max |a-b| / max |b|)
mpi_test_setup() {
    CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
    PY=${FL_PYTHON:-/usr/bin/python3}
    MPIRUN=$(command -v mpirun) || { echo "FAIL: mpirun not found (install openmpi-bin)"; exit 1; }
    T=$(mktemp -d "/tmp/fl_test_$1_XXXXXX")
    trap 'rm -rf "$T"' EXIT
    export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
    . "${BASH_SOURCE[0]%/*}/cli_lib.sh"
    MPI2=("$MPIRUN" --allow-run-as-root --oversubscribe -np 2)
}

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
