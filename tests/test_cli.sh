#!/usr/bin/env bash
# CLI end to end: init -> info -> info --json -> run -> bench, with an independent Python reader of
# the safetensors file and PyTorch (nn.LSTM, nn.Embedding, nn.Linear) as the reference for run's
# outputs and final states. Also exit codes and messages for bad flags and bad files.
# Environment (set by CTest): FL_CLI = the fastlstm binary, FL_PYTHON = a Python with torch + numpy.
set -u
CLI=${FL_CLI:?FL_CLI must name the fastlstm binary}
PY=${FL_PYTHON:-/usr/bin/python3}
. "$(dirname "$0")/cli_lib.sh"

"$PY" -c 'import torch, numpy' || { echo "FAIL: $PY lacks torch/numpy"; exit 1; }

# ---------------------------------------------------------------- help
for c in demo version init info run bench decompose profile plan compress train finetune eval; do
    expect 0 "$CLI" "$c" --help && has out "usage: fastlstm $c"
done
for c in demo version init info run bench decompose; do
    expect 0 "$CLI" "$c" --help && has out "example"
done
expect 0 "$CLI" version && has out "fastlstm " && has out "BLAS: OpenBLAS runs its"
expect 2 "$CLI" version extra && has err "'extra'"

# ---------------------------------------------------------------- init
expect 0 "$CLI" init --input 5 --hidden 8 --layers 2 --seed 3 -o "$T/feat.st"
expect 0 "$CLI" init --vocab 13 --input 6 --hidden 7 --layers 2 --lm --seed 4 -o "$T/lm.st"
expect 0 "$CLI" init --input 4 --hidden 9 --layers 1 --classes 3 --seed 5 -o "$T/cls.st"
expect 0 "$CLI" init --vocab 10 --input 3 --hidden 5 --layers 3 --classes 2 -o "$T/tokcls.st"
# Same seed, same file; another seed, another file.
expect 0 "$CLI" init --vocab 13 --input 6 --hidden 7 --layers 2 --lm --seed 4 -o "$T/lm2.st"
cmp -s "$T/lm.st" "$T/lm2.st" || fail "init with the same seed wrote different files"
expect 0 "$CLI" init --vocab 13 --input 6 --hidden 7 --layers 2 --lm --seed 5 -o "$T/lm3.st"
cmp -s "$T/lm.st" "$T/lm3.st" && fail "init with another seed wrote the same file"

# ---------------------------------------------------------------- info
expect 0 "$CLI" info "$T/lm.st" && has out "lstm.weight_hh_l1" && has out "head.weight" && has out "parameters:"
for m in feat lm cls tokcls; do
    expect 0 "$CLI" info "$T/$m.st" --json || continue
    cp "$T/out" "$T/$m.info.json"
    # Independent reader: header layout, dtypes, packed offsets, metadata; info --json agrees with it.
    "$PY" - "$T/$m.st" "$T/$m.info.json" <<'EOF' >"$T/out" 2>"$T/err" || fail "python check of $m.st"
import json, struct, sys
path, info = sys.argv[1], json.load(open(sys.argv[2]))
b = open(path, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
assert n % 8 == 0 and 8 + n <= len(b), n
h = json.loads(b[8:8 + n].decode('utf-8'))
meta = h.pop('__metadata__')
assert meta['format'] == 'fastlstm' and meta['format_version'] == '1', meta
assert all(isinstance(v, str) for v in meta.values())
a = info['arch']
for k in ('vocab', 'input', 'hidden', 'layers', 'head_out'):
    assert int(meta[k]) == a[k], (k, meta[k], a[k])
assert meta['head'] == a['head']
ends, params = 0, 0
for name, t in sorted(h.items(), key=lambda kv: kv[1]['data_offsets'][0]):
    assert t['dtype'] == 'F32'
    cnt = 1
    for d in t['shape']: cnt *= d
    s, e = t['data_offsets']
    assert s == ends and e - s == 4 * cnt, (name, s, e, ends)
    ends, params = e, params + cnt
assert 8 + n + ends == len(b), 'data section not packed'
assert info['params'] == params and info['bytes'] == 4 * params, (info['params'], params)
L, H, D = a['layers'], a['hidden'], a['input']
assert h['lstm.weight_ih_l0']['shape'] == [4 * H, D] and h['lstm.weight_hh_l%d' % (L - 1)]['shape'] == [4 * H, H]
assert [m['name'] for m in info['matrices']][:2] == ['lstm.weight_ih_l0', 'lstm.weight_hh_l0']
for m in info['matrices']:
    assert m['method'] == 'dense' and m['params'] == m['rows'] * m['cols'] and m['flops'] == 2 * m['params']
    assert meta['method.' + m['name']] == 'dense' and float(meta['rel_error.' + m['name']]) == 0.0
EOF
done

# ---------------------------------------------------------------- run vs PyTorch
# ref.py T: each line "ID MODEL X TM STATE" of T/cases names a CLI run whose outputs are T/ID_y.npy,
# T/ID.h.npy, T/ID.c.npy; recomputes each with torch from the safetensors file (read independently)
# and compares (max abs error / max |ref| < 1e-4). One process, so torch loads once.
cat >"$T/ref.py" <<'PYEOF'
import json, struct, sys, numpy as np, torch
torch.set_num_threads(1)
T = sys.argv[1]
def load(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); meta = h.pop('__metadata__')
    W = {k: torch.from_numpy(np.frombuffer(b, '<f4', (v['data_offsets'][1] - v['data_offsets'][0]) // 4,
                                           8 + n + v['data_offsets'][0]).reshape(v['shape']).copy())
         for k, v in h.items()}
    return meta, W
def close(name, got, want):
    assert got.dtype == np.float32 and got.shape == want.shape, (name, got.dtype, got.shape, want.shape)
    err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-6)
    assert err < 1e-4, (name, err)
bad = 0
for line in open(T + '/cases'):
    cid, model, xname, tm, state = line.split()
    tm = tm == '1'
    meta, W = load('%s/%s.st' % (T, model))
    V, D, H, L = (int(meta[k]) for k in ('vocab', 'input', 'hidden', 'layers'))
    head = meta['head']
    lstm = torch.nn.LSTM(D, H, L, batch_first=True)
    lstm.load_state_dict({k[5:]: v for k, v in W.items() if k.startswith('lstm.')})
    x = np.load('%s/%s.npy' % (T, xname))
    if tm: x = np.swapaxes(x, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(x))
    if V > 0: x = torch.nn.functional.embedding(x.long(), W['embedding.weight'])
    st = None
    if state == '1': st = (torch.from_numpy(np.load(T + '/h0.npy')), torch.from_numpy(np.load(T + '/c0.npy')))
    with torch.no_grad():
        y, (hn, cn) = lstm(x, st)
        if head == 'per_step': y = y @ W['head.weight'].T + W['head.bias']
        if head == 'last_step': y = y[:, -1] @ W['head.weight'].T + W['head.bias']
    y = y.numpy()
    if tm and head != 'last_step': y = np.swapaxes(y, 0, 1)
    try:
        close(cid + ' y', np.load('%s/%s_y.npy' % (T, cid)), y)
        close(cid + ' h_n', np.load('%s/%s.h.npy' % (T, cid)), hn.numpy())
        close(cid + ' c_n', np.load('%s/%s.c.npy' % (T, cid)), cn.numpy())
    except AssertionError as e:
        print('FAIL: case', line.strip(), 'differs from PyTorch:', e)
        bad += 1
sys.exit(1 if bad else 0)
PYEOF
"$PY" -c "
import numpy as np
r = np.random.RandomState(0)
np.save('$T/xf.npy', r.randn(3, 6, 5).astype(np.float32))          # (B, T, D) for feat
np.save('$T/xf_tm.npy', r.randn(6, 3, 5).astype(np.float32))       # (T, B, D)
np.save('$T/xc.npy', r.randn(2, 4, 4).astype(np.float32))          # cls
np.save('$T/ids64.npy', r.randint(0, 13, size=(2, 7)).astype(np.int64))
np.save('$T/ids32.npy', r.randint(0, 10, size=(4, 3)).astype(np.int32))
np.save('$T/h0.npy', r.randn(2, 3, 8).astype(np.float32)); np.save('$T/c0.npy', r.randn(2, 3, 8).astype(np.float32))
np.save('$T/bad_ids.npy', np.array([[0, 13]], dtype=np.int64))
np.save('$T/xf_badD.npy', r.randn(3, 6, 4).astype(np.float32))
np.save('$T/xf_nan.npy', np.full((1, 2, 5), np.nan, dtype=np.float32))
np.save('$T/h0_bad.npy', r.randn(2, 2, 8).astype(np.float32))
h = r.randn(2, 3, 8).astype(np.float32); h[1, 2, 5] = np.inf; np.save('$T/h0_inf.npy', h)
" || fail "writing inputs"
# A model file written by other code: PyTorch modules' own initialisation, tensors in state_dict
# order with 64-byte aligned offsets, minimal metadata (no method.* / rel_error.* keys).
"$PY" -c "
import json, struct, numpy as np, torch
torch.manual_seed(0)
lstm, head = torch.nn.LSTM(5, 6, 2, batch_first=True), torch.nn.Linear(6, 4)
sd = {'lstm.' + k: v for k, v in lstm.state_dict().items()}
sd.update({'head.' + k: v for k, v in head.state_dict().items()})
hdr, blobs, off = {'__metadata__': {'format': 'fastlstm', 'format_version': '1', 'vocab': '0', 'input': '5',
       'hidden': '6', 'layers': '2', 'head': 'per_step', 'head_out': '4'}}, [], 0
for k, v in sd.items():
    b = v.detach().numpy().astype('<f4').tobytes()
    hdr[k] = {'dtype': 'F32', 'shape': list(v.shape), 'data_offsets': [off, off + len(b)]}
    pad = (-len(b)) % 64
    blobs.append(b + bytes(pad)); off += len(b) + pad
js = json.dumps(hdr).encode()
js += b' ' * ((-len(js)) % 8)
open('$T/torch.st', 'wb').write(struct.pack('<Q', len(js)) + js + b''.join(blobs))
" || fail "writing a model with PyTorch"

# check MODEL X TM STATE [ARGS...]: run the CLI (with h0.npy/c0.npy when STATE is 1) and record the
# case for ref.py.
ncase=0
: >"$T/cases"
check() {
    local model=$1 x=$2 tm=$3 state=$4; shift 4
    local flags=("$@") id="case$ncase"
    ncase=$((ncase + 1))
    [ "$tm" = 1 ] && flags+=(--time-major)
    [ "$state" = 1 ] && flags+=(--h0 "$T/h0.npy" --c0 "$T/c0.npy")
    expect 0 "$CLI" run "$T/$model.st" --input "$T/$x.npy" --output "$T/${id}_y.npy" --state-out "$T/$id" \
        "${flags[@]}" || return
    echo "$id $model $x $tm $state" >>"$T/cases"
}
check feat xf 0 0
check feat xf_tm 1 0
check feat xf 0 1
check feat xf_tm 1 1
check feat xf 0 0 --threads 2
check cls xc 0 0
check lm ids64 0 0
check lm ids64 1 0
check tokcls ids32 0 0
check torch xf 0 0
[ "$(wc -l <"$T/cases")" -eq "$ncase" ] || fail "some runs failed"
"$PY" "$T/ref.py" "$T" >"$T/out" 2>"$T/err" || fail "run outputs differ from PyTorch"
"$PY" -c "import numpy as np; a = np.load('$T/case8_y.npy'); assert a.shape == (4, 2), a.shape" ||
    fail "classifier output shape"

# ---------------------------------------------------------------- bench
expect 0 "$CLI" bench "$T/lm.st" --reps 2 --warmup 1 --batch 2 --seq 5 && has out "tokens/s"
# --warmup-ms: warm-up runs go on for the time given (at least the runs given); the count made is reported
expect 0 "$CLI" bench "$T/lm.st" --reps 2 --warmup 1 --warmup-ms 50 --batch 2 --seq 5 --json
"$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['warmup'] > 1, d" "$T/out" || fail "--warmup-ms made no extra warm-up runs"
expect 2 "$CLI" bench "$T/lm.st" --warmup-ms -5 && has err "--warmup-ms"
expect 0 "$CLI" bench "$T/feat.st" --reps 2 --json && cp "$T/out" "$T/bench.json"
"$PY" -c "
import json; r = json.load(open('$T/bench.json'))
assert r['reps'] == 2 and r['batch'] == 1 and r['min_ms'] <= r['median_ms'] <= r['max_ms'] and r['tokens_per_s'] > 0, r
" || fail "bench --json"

# ---------------------------------------------------------------- usage errors: exit 2, flag named
expect 2 "$CLI" init --input 4 --hidden 4 --layers 1 --bogus -o "$T/x.st" && has err "--bogus"
expect 2 "$CLI" init --input 4 --hidden four --layers 1 -o "$T/x.st" && has err "--hidden"
expect 2 "$CLI" init --input 4 --hidden 4 --layers 1 && has err "-o"
expect 2 "$CLI" init --input 4 --hidden 4 --layers 1 --lm -o "$T/x.st" && has err "--vocab"
expect 2 "$CLI" init --vocab 5 --input 4 --hidden 4 --layers 1 --lm --classes 3 -o "$T/x.st" && has err "--classes"
expect 2 "$CLI" info "$T/lm.st" --verbose && has err "--verbose"
expect 2 "$CLI" info && has err "MODEL"
expect 2 "$CLI" run "$T/lm.st" --input "$T/ids64.npy" && has err "--output"
expect 2 "$CLI" run "$T/lm.st" --input "$T/ids64.npy" --output "$T/y.npy" --threads 0 && has err "--threads"
expect 2 "$CLI" run "$T/lm.st" --input && has err "--input"
expect 2 "$CLI" bench "$T/lm.st" --reps -1 && has err "--reps"
expect 2 "$CLI" bench "$T/lm.st" --fast && has err "--fast"
expect 2 "$CLI" frobnicate && has err "frobnicate"

# ---------------------------------------------------------------- runtime errors: exit 1, named
expect 1 "$CLI" info "$T/nope.st" && has err "fastlstm info: FL_ERR_IO" && has err "$T/nope.st"
expect 1 "$CLI" run "$T/nope.st" --input "$T/xf.npy" --output "$T/y.npy" && has err "$T/nope.st"
expect 1 "$CLI" bench "$T/nope.st" --reps 1 && has err "$T/nope.st"
head -c 100 "$T/lm.st" >"$T/trunc.st"
expect 1 "$CLI" info "$T/trunc.st" && has err "FL_ERR_FORMAT" && has err "$T/trunc.st"
expect 1 "$CLI" run "$T/trunc.st" --input "$T/ids64.npy" --output "$T/y.npy" && has err "FL_ERR_FORMAT"
expect 1 "$CLI" run "$T/lm.st" --input "$T/xf.npy" --output "$T/y.npy" && has err "FL_ERR_DTYPE"
expect 1 "$CLI" run "$T/lm.st" --input "$T/bad_ids.npy" --output "$T/y.npy" && has err "FL_ERR_DATA" && has err "bad_ids.npy"
expect 1 "$CLI" run "$T/feat.st" --input "$T/ids64.npy" --output "$T/y.npy" && has err "FL_ERR_DTYPE"
expect 1 "$CLI" run "$T/feat.st" --input "$T/xf_badD.npy" --output "$T/y.npy" && has err "FL_ERR_SHAPE" && has err "xf_badD.npy"
expect 1 "$CLI" run "$T/feat.st" --input "$T/xf_nan.npy" --output "$T/y.npy" && has err "FL_ERR_NONFINITE" &&
    has err "xf_nan.npy: " && has err "x[batch 0, step 0, feature 0]"
expect 1 "$CLI" run "$T/feat.st" --input "$T/xf.npy" --output "$T/y.npy" --h0 "$T/h0.npy" --c0 "$T/h0_inf.npy" &&
    has err "FL_ERR_NONFINITE" && has err "h0_inf.npy: [layer 1, batch 2, unit 5]"
expect 1 "$CLI" run "$T/feat.st" --input "$T/xf.npy" --output "$T/y.npy" --h0 "$T/h0_bad.npy" && has err "FL_ERR_SHAPE"
expect 1 "$CLI" run "$T/feat.st" --input "$T/missing.npy" --output "$T/y.npy" && has err "FL_ERR_IO" && has err "missing.npy"
expect 1 "$CLI" run "$T/feat.st" --input "$T/xf.npy" --output "$T/no/such/dir/y.npy" && has err "FL_ERR_IO"
expect 1 "$CLI" init --input 4 --hidden 4 --layers 1 -o "$T/no/such/dir/m.st" && has err "FL_ERR_IO"

# ---------------------------------------------------------------- tools/export_torch.py
EXPORT="${FL_SOURCE_DIR:-$(dirname "$0")/..}/tools/export_torch.py"
"$PY" -c "
import torch
torch.manual_seed(0)
l = torch.nn.LSTM(3, 4, 2)
sd = {'lstm.' + k: v.clone() for k, v in l.state_dict().items()}
torch.save(sd, '$T/sd.pt')
sd['lstm.weight_hh_l1'][5, 2] = float('nan')
torch.save(sd, '$T/sd_nan.pt')
" || fail "writing state dicts"
expect 0 "$PY" "$EXPORT" "$T/sd.pt" -o "$T/exported.st"
expect 0 "$CLI" info "$T/exported.st" && has out "lstm.weight_hh_l1"
expect 1 "$PY" "$EXPORT" "$T/sd_nan.pt" -o "$T/exported_nan.st" && has err "lstm.weight_hh_l1: non-finite value nan at index (5, 2)"
[ -e "$T/exported_nan.st" ] && fail "export_torch.py wrote a file for a NaN state dict"
expect 2 "$PY" "$EXPORT" -o "$T/x.st"

# ---------------------------------------------------------------- decompose, demo
expect 0 "$CLI" decompose "$T/feat.st" -o "$T/feat_svd.st" --rank 2 && has out "wrote $T/feat_svd.st" &&
    has err "lstm.weight_hh_l1"
expect 0 "$CLI" info "$T/feat_svd.st" --json && cp "$T/out" "$T/feat_svd.json"
"$PY" -c "
import json; r = json.load(open('$T/feat_svd.json'))
m = r['matrices']
assert [x['method'] for x in m] == ['svd'] * 4 and all(x['rank'] == 2 for x in m), m
assert all(0 < x['rel_error'] < 1 for x in m), m
" || fail "decompose --rank 2: info of the result"
expect 0 "$CLI" run "$T/feat_svd.st" --input "$T/xf.npy" --output "$T/y_svd.npy"
expect 0 "$CLI" decompose "$T/lm.st" -o "$T/lm_mix.st" --tol 0.9 --head --layer 1:ih=dense,hh=cp:3 --max-iter 5
expect 0 "$CLI" info "$T/lm_mix.st" && has out "cp" && has out "dense"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" && has err "needs a rank"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --method cp --layer 0:hh=cp:2 && has err "lstm.weight_ih_l0"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --rank 2 --tol 0.1 && has err "only one of"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --rank 0 && has err "--rank"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --rank 2 --layer 2:ih=svd && has err "--layer"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --rank 2 --layer 0:xx=svd && has err "--layer"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --rank 2 --head && has err "has no head"
expect 2 "$CLI" decompose "$T/feat.st" --rank 2 && has err "-o OUT"
expect 2 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --method qr --rank 2 && has err "--method"
expect 1 "$CLI" decompose "$T/feat.st" -o "$T/x.st" --rank 6 && has err "FL_ERR_ARG" &&
    has err "lstm.weight_ih_l0: SVD rank 6 exceeds min(32, 5) = 5"
expect 1 "$CLI" decompose "$T/nope.st" -o "$T/x.st" --rank 2 && has err "$T/nope.st"
[ -e "$T/x.st" ] && fail "a failed decompose wrote its output"
expect 0 "$CLI" demo --random --hidden 16 --layers 1 --seq 3 --reps 1 && has out "speedup" && has out "svd"
expect 0 "$CLI" demo --random --hidden 16 --layers 1 --seq 3 --reps 1 --method cp --rank 3 && has out "cp"
expect 2 "$CLI" demo --random --hidden 3 && has err "--hidden"
expect 2 "$CLI" demo --random --hidden 16 --rank 17 && has err "--rank"
expect 2 "$CLI" demo --random --method qr && has err "--method"

# Every command taking one input refuses an unknown option and a second input alike (cli_positional).
for c in bench run info decompose quantize export import plan compress; do
    expect 2 "$CLI" $c --nope && has err "unknown option '--nope' (see 'fastlstm $c --help')"
    expect 2 "$CLI" $c a.st b.st && has err "unexpected argument 'b.st' (one input only; already given 'a.st')"
done

if [ "$failures" -ne 0 ]; then
    echo "test_cli: $failures failure(s)"
    exit 1
fi
echo "test_cli: all checks passed"
