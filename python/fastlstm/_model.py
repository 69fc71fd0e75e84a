"""Model, Session and the array plumbing between NumPy and fl_session_run / fl_session_step.

Arrays in: C-contiguous float32 features and int32 token ids are handed to the library as they
are (no copy); other layouts are made contiguous, other integer dtypes are converted after a range
check, and any other dtype is refused (DtypeError) rather than silently rounded. Arrays out are
allocated here with np.empty and filled by the library in place.
"""
import json
import os
import struct
import tempfile
import threading
import weakref
from collections import namedtuple

import numpy as np

from . import _lib
from ._lib import BY_NAME

HEADS = ("none", "per_step", "last_step")
METHODS = ("dense", "svd", "cp")
KINDS = ("ih", "hh", "head", "proj")
BATCH_MAJOR, TIME_MAJOR = 0, 1

Arch = namedtuple("Arch", "vocab input hidden layers head head_out bidirectional proj padding_idx")
Arch.__doc__ = """A model's architecture (fl_arch): vocab (0: feature inputs), input size, hidden size,
layers, head ('none', 'per_step', 'last_step'), head_out, bidirectional (bool), proj (0: none),
padding_idx (the embedding's padding token, or None)."""


def _ptr(a):
    return None if a is None else a.ctypes.data


def _fail(cls, message):
    return BY_NAME[cls](message)


def features(x, name, ndim, dim):
    """x as a C-contiguous float32 array of `ndim` dims whose last is `dim` (no copy when it is one)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise _fail("DtypeError", "%s: dtype %s, expected float32 features (x.astype(np.float32))" % (name, x.dtype))
    if x.ndim != ndim or x.shape[-1] != dim or 0 in x.shape:
        want = ("(B, T, %d)" if ndim == 3 else "(B, %d)") % dim
        raise _fail("ShapeError", "%s: shape %s, expected %s" % (name, x.shape, want))
    return np.ascontiguousarray(x)


def int32s(x, name, ndim, low=None, high=None):
    """x as a C-contiguous int32 array of `ndim` dims (no copy when it is one). Other integer dtypes
    are converted when every value fits in [low, high) (default: int32's range)."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise _fail("DtypeError", "%s: dtype %s, expected integer ids (int32 or int64)" % (name, x.dtype))
    if x.ndim != ndim or 0 in x.shape:
        raise _fail("ShapeError", "%s: shape %s, expected %d dimensions, none empty" % (name, x.shape, ndim))
    if x.dtype != np.int32:
        lo, hi = (-2**31 if low is None else low), (2**31 if high is None else high)
        bad = (x < lo) | (x >= hi)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise _fail("ArgError", "%s%s = %d outside [%d, %d)" % (name, list(at), int(x[at]), lo, hi))
        x = x.astype(np.int32)
    return np.ascontiguousarray(x)


def method_code(method):
    if method not in METHODS:
        raise _fail("ArgError", "method %r: expected one of %s" % (method, ", ".join(METHODS)))
    return METHODS.index(method)


def read_safetensors(path):
    """{name: float32 array} and the __metadata__ dict of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise _fail("DtypeError", "%s: tensor %r has dtype %s (only F32 is read)" % (path, name, t["dtype"]))
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob, "<f4", (b - a) // 4, 8 + n + a).reshape(t["shape"]).copy()
    return out, meta


class _Owner:
    """Owns one fl_model pointer. The library requires every session to be freed before its model
    (it asserts so), and objects collected together as a cycle are finalised in any order: the
    pointer is freed when the Model has let go (drop) and no session holds it any more."""

    def __init__(self, L, h):
        self.L, self.h, self.sessions, self.dropped = L, h, 0, False
        self.lock = threading.Lock()

    def acquire(self):
        with self.lock:
            self.sessions += 1

    def release(self):
        with self.lock:
            self.sessions -= 1
            free = self.sessions == 0 and self.dropped
        if free:
            self._free()

    def drop(self):
        with self.lock:
            self.dropped = True
            free = self.sessions == 0
        if free:
            self._free()

    def _free(self):
        h, self.h = self.h, None
        if h:
            self.L.f.fl_model_free(h)


class _Closing:
    """close() at garbage collection (errors ignored) and at the end of a `with` block."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Model(_Closing):
    """A fastlstm model (fl_model): the LSTM's architecture and its weights, each weight matrix
    dense or decomposed (SVD or CP). Create one with fastlstm.load(), fastlstm.from_torch(),
    fastlstm.init() or by decomposing, planning or training another. Models are immutable from
    Python (training returns a new model), so any number of threads may run one at once."""

    def __init__(self, handle, _lib_obj=None):
        self._L = _lib_obj or _lib.get()
        self._owner = _Owner(self._L, handle)
        self._closed = False
        self._local = threading.local()  # per-thread cached session for run()

    def close(self):
        """Release the model (also done when the object is collected). The library's model is
        freed once no Session of it is open: sessions keep working after close(). Do not close a
        model another thread is running."""
        if not self._closed:
            self._closed = True
            self._local = threading.local()  # drops the cached sessions
            self._owner.drop()

    @property
    def handle(self):
        """The fl_model pointer (int) for other C code; valid while this object lives."""
        if self._closed:
            raise _fail("ArgError", "the model is closed")
        return self._owner.h

    # ---------------------------------------------------------------- description

    def _live(self):
        # The library model, also after close() while a session still holds it.
        if self._owner.h is None:
            raise _fail("ArgError", "the model is closed")
        return self._owner.h

    @property
    def arch(self):
        """The architecture as an Arch namedtuple."""
        a = self._L.f.fl_model_arch(self._live()).contents
        return Arch(a.vocab, a.input, a.hidden, a.layers, HEADS[a.head], a.head_out,
                    bool(getattr(a, "bidirectional", 0)), getattr(a, "proj", 0),
                    a.padding_idx if getattr(a, "has_padding", 0) else None)

    def matrices(self):
        """One dict per weight matrix, in the library's order (PyTorch's state_dict order: weight_ih /
        weight_hh per layer, then the head): name, method ('dense', 'svd', 'cp'), rows, cols, rank,
        params, flops, rel_error (relative Frobenius error recorded at decomposition; 0 dense, < 0
        unknown), kind ('ih', 'hh', 'head', 'proj'), layer (-1: head), direction (1: reverse) and
        bytes (stored size in the model file)."""
        out = []
        for i in range(self._L.f.fl_model_num_matrices(self.handle)):
            info = self._L.S.fl_matrix_info()
            self._L.check(self._L.f.fl_model_matrix_info(self.handle, i, ctypes_byref(info)))
            d = {"name": info.name.decode(), "method": METHODS[info.method], "rows": info.rows,
                 "cols": info.cols, "rank": info.rank, "params": info.params, "flops": info.flops,
                 "rel_error": info.rel_error, "kind": KINDS[info.kind], "layer": info.layer,
                 "direction": info.direction, "bytes": info.bytes}
            out.append(d)
        return out

    def info(self):
        """What `fastlstm info` prints, as a dict: the architecture fields, params (all stored
        parameters), flops_per_step and matrices (see matrices())."""
        d = self.arch._asdict()
        d["params"] = self._L.f.fl_model_num_params(self.handle)
        d["flops_per_step"] = self._L.f.fl_model_flops_per_step(self.handle)
        d["matrices"] = self.matrices()
        return d

    def __repr__(self):
        if self._closed:
            return "<fastlstm.Model (closed)>"
        a = self.arch
        methods = ",".join(sorted({m["method"] for m in self.matrices()}))
        return "<fastlstm.Model vocab=%d input=%d hidden=%d layers=%d head=%s/%d %s>" % (
            a.vocab, a.input, a.hidden, a.layers, a.head, a.head_out, methods)

    # ---------------------------------------------------------------- files and copies

    def save(self, path):
        """Write the model as safetensors to path (atomically: temporary file, fsync, rename)."""
        self._L.check(self._L.f.fl_model_save(self.handle, os.fsencode(path)))

    def clone(self):
        """A deep copy."""
        out = _lib.c_void_p()
        self._L.check(self._L.f.fl_model_clone(self.handle, ctypes_byref(out)))
        return Model(out.value)

    def weights(self, dense=True):
        """{name: float32 array} named as PyTorch's state_dict ('embedding.weight',
        'lstm.weight_ih_l0', 'lstm.bias_ih_l0', ..., 'head.weight', 'head.bias'). dense=True
        reconstructs decomposed matrices (as the library computes them, in float32); dense=False
        gives what the file stores: SVD factors '<name>.U' / '.V', CP factors '.A' / '.B' / '.C'."""
        m = self
        if dense:
            m = decompose(self, specs=["dense"] * len(self.matrices()))
        with tempfile.TemporaryDirectory(prefix="fastlstm-") as d:
            path = os.path.join(d, "model.safetensors")
            m.save(path)
            tensors, _ = read_safetensors(path)
        if m is not self:
            m.close()
        return tensors

    def to_torch(self):
        """A torch.nn.Module with the dense-reconstructed weights: submodules `embedding`
        (nn.Embedding, if the model takes tokens), `lstm` (nn.LSTM, batch_first=True) and `head`
        (nn.Linear, if any); forward(x, state=None) returns (y, (h_n, c_n)) as Model.run does."""
        from . import _torch
        return _torch.to_torch(self)

    # ---------------------------------------------------------------- inference

    def session(self, max_batch=1, max_seq=256, threads=1):
        """A Session for streaming (step()) and repeated runs, with scratch for max_batch streams
        and sequences of up to max_seq steps, on `threads` worker threads."""
        return Session(self, max_batch=max_batch, max_seq=max_seq, threads=threads)

    def _session_for(self, batch, seq, threads):
        s = getattr(self._local, "session", None)
        if s is None or s.max_batch < batch or s.max_seq < seq:
            mb = batch if s is None else max(batch, s.max_batch)
            ms = seq if s is None else max(seq, s.max_seq)
            if s is not None:
                s.close()
            s = self._local.session = Session(self, max_batch=mb, max_seq=ms, threads=threads, _cached=True)
        if s.threads != threads:
            s.set_threads(threads)
        return s

    def run(self, x, lengths=None, h0=None, c0=None, time_major=False, threads=1):
        """Run whole sequences, as nn.LSTM(batch_first=True) followed by the model's head.

        x: (B, T, D) float32 features, or (B, T) integer token ids for a model with an embedding
        ((T, B, ...) with time_major=True). lengths: optional (B) valid lengths in [1, T]
        (pack_padded_sequence semantics: outputs past a sequence's end are zero, h_n / c_n and a
        last-step head are taken at its last valid step). h0, c0: optional (L, B, H) float32
        initial states. Returns (y, (h_n, c_n)): y (B, T, H) without a head, (B, T, V) with a
        per-step head, (B, C) with a last-step head; h_n, c_n (L, B, H).
        Raises ShapeError / DtypeError for arrays that do not fit, NonFiniteError for NaN/Inf,
        ArgError for token ids out of range, with the library's message."""
        a = self.arch
        xs = self._check_x(x, 2 if a.vocab else 3)
        T, B = (xs.shape[0], xs.shape[1]) if time_major else (xs.shape[1], xs.shape[0])
        if lengths is not None:
            lengths = int32s(lengths, "lengths", 1)
            if lengths.shape != (B,):
                raise _fail("ShapeError", "lengths: shape %s, expected (%d,)" % (lengths.shape, B))
            if not self._L.has["fl_run_state_size"]:
                if not (lengths == T).all():
                    return self._run_by_length(xs, lengths, h0, c0, time_major, threads)
                lengths = None
        h0 = self._check_state(h0, "h0", B, 0)
        c0 = self._check_state(c0, "c0", B, 1)
        s = self._session_for(B, T, threads)
        return s._run(self, xs, lengths, h0, c0, time_major)

    def _run_by_length(self, xs, lengths, h0, c0, time_major, threads):
        # A library without fl_run_io.lengths: run each group of equal lengths on its own prefix.
        if time_major:
            xs = np.swapaxes(xs, 0, 1)
        B, T = xs.shape[0], xs.shape[1]
        bad = np.nonzero((lengths < 1) | (lengths > T))[0]
        if bad.size:
            raise _fail("ArgError", "lengths[%d] = %d outside [1, %d]" % (bad[0], lengths[bad[0]], T))
        h0 = self._check_state(h0, "h0", B, 0)
        c0 = self._check_state(c0, "c0", B, 1)
        y = hn = cn = None
        for n in np.unique(lengths):
            idx = np.nonzero(lengths == n)[0]
            part = lambda s: None if s is None else s[:, idx]  # noqa: E731
            yk, (hk, ck) = self.run(xs[idx, :n], h0=part(h0), c0=part(c0), threads=threads)
            if y is None:
                y = np.zeros((B,) + yk.shape[1:] if self.arch.head == "last_step" else (B, T) + yk.shape[2:],
                             np.float32)
                hn = np.zeros((hk.shape[0], B) + hk.shape[2:], np.float32)
                cn = np.zeros((ck.shape[0], B) + ck.shape[2:], np.float32)
            if self.arch.head == "last_step":
                y[idx] = yk
            else:
                y[idx, :n] = yk
            hn[:, idx], cn[:, idx] = hk, ck
        if time_major and self.arch.head != "last_step":
            y = np.ascontiguousarray(np.swapaxes(y, 0, 1))
        return y, (hn, cn)

    def _check_x(self, x, ndim):
        a = self.arch
        if a.vocab:
            return int32s(x, "x", ndim, 0, a.vocab)
        return features(x, "x", ndim, a.input)

    def state_shape(self, batch, cell=False):
        """Shape of h_n (cell=False) or c_n (cell=True) for a batch: (L * dirs, B, out)."""
        if self._L.has["fl_run_state_size"]:
            a = self.arch
            rows = a.layers * (2 if a.bidirectional else 1)
            n = self._L.f.fl_run_state_size(self._live(), batch, int(cell))
            return (rows, batch, n // (rows * batch))
        a = self.arch
        return (a.layers, batch, a.hidden)

    def _check_state(self, s, name, B, cell):
        if s is None:
            return None
        want = self.state_shape(B, bool(cell))
        s = features(s, name, 3, want[2])
        if s.shape != want:
            raise _fail("ShapeError", "%s: shape %s, expected %s" % (name, s.shape, want))
        return s


class Session(_Closing):
    """Scratch buffers and per-stream (h, c) state for one model (fl_session). step() advances
    streams 0..B-1 by one time step; run() is Model.run on this session's buffers. A session is
    not thread-safe: use one per thread (Model.run does this for you)."""

    def __init__(self, model, max_batch=1, max_seq=256, threads=1, _cached=False):
        self._L = model._L
        self._h = None
        o = self._L.default("fl_session_opts")
        o.max_batch, o.max_seq, o.threads = int(max_batch), int(max_seq), int(threads)
        out = _lib.c_void_p()
        self._L.check(self._L.f.fl_session_create(model.handle, ctypes_byref(o), ctypes_byref(out)))
        # Every session holds the library model (through its _Owner), which is freed only after the
        # last session. A session from session() also keeps the Model object; the ones Model.run
        # caches per thread refer back weakly (the Model holds them: no cycle).
        self._owner = model._owner
        self._owner.acquire()
        self._h = out.value
        self._model = weakref.ref(model) if _cached else (lambda: model)
        self.max_batch, self.max_seq, self.threads = o.max_batch, o.max_seq, o.threads

    @property
    def model(self):
        """The Model this session runs."""
        return self._model()

    def close(self):
        """Free the session now (also done when it is collected)."""
        h, self._h = self._h, None
        if h:
            self._L.f.fl_session_free(h)
            self._owner.release()

    @property
    def handle(self):
        """The fl_session pointer (int); valid while this object lives and is not closed."""
        if not self._h:
            raise _fail("ArgError", "the session is closed")
        return self._h

    def set_threads(self, threads):
        """Change the number of worker threads."""
        self._L.check(self._L.f.fl_session_set_threads(self.handle, int(threads)))
        self.threads = int(threads)

    def run(self, x, lengths=None, h0=None, c0=None, time_major=False):
        """Model.run on this session (see there); does not touch the streaming state."""
        m = self.model
        a = m.arch
        xs = m._check_x(x, 2 if a.vocab else 3)
        B = xs.shape[1] if time_major else xs.shape[0]
        if lengths is not None:
            lengths = int32s(lengths, "lengths", 1)
            if lengths.shape != (B,):
                raise _fail("ShapeError", "lengths: shape %s, expected (%d,)" % (lengths.shape, B))
            if not self._L.has["fl_run_state_size"]:
                raise _fail("UnsupportedError", "this libfastlstm has no variable-length runs; use Model.run")
        return self._run(m, xs, lengths, m._check_state(h0, "h0", B, 0), m._check_state(c0, "c0", B, 1), time_major)

    def _run(self, m, xs, lengths, h0, c0, time_major):
        L = self._L
        a = m.arch
        T, B = (xs.shape[0], xs.shape[1]) if time_major else (xs.shape[1], xs.shape[0])
        n = L.f.fl_run_output_size(m._live(), B, T)
        if a.head == "last_step":
            y = np.empty((B, n // B), np.float32)
        else:
            y = np.empty(((T, B) if time_major else (B, T)) + (n // (B * T),), np.float32)
        hn = np.empty(m.state_shape(B, False), np.float32)
        cn = np.empty(m.state_shape(B, True), np.float32)
        io = L.S.fl_run_io()
        io.layout, io.batch, io.seq = (TIME_MAJOR if time_major else BATCH_MAJOR), B, T
        if a.vocab:
            io.tokens = xs.ctypes.data
        else:
            io.x = xs.ctypes.data
        io.h0, io.c0, io.y, io.hn, io.cn = _ptr(h0), _ptr(c0), y.ctypes.data, hn.ctypes.data, cn.ctypes.data
        if lengths is not None:
            io.lengths = lengths.ctypes.data
        L.check(L.f.fl_session_run(self.handle, ctypes_byref(io)))
        return y, (hn, cn)

    def step(self, x):
        """Advance streams 0..B-1 by one step. x: (B, D) float32 features or (B,) integer token
        ids. Returns (B, H) top hidden states (no head) or (B, head_out) head outputs."""
        m, L = self.model, self._L
        a = m.arch
        if a.vocab:
            xs = int32s(x, "x", 1, 0, a.vocab)
        else:
            xs = features(x, "x", 2, a.input)
        B = xs.shape[0]
        width = a.head_out if a.head != "none" else m.state_shape(1, False)[2]
        y = np.empty((B, width), np.float32)
        tok = xs.ctypes.data if a.vocab else None
        feat = None if a.vocab else xs.ctypes.data
        L.check(L.f.fl_session_step(self.handle, B, feat, tok, y.ctypes.data))
        return y

    def reset(self, stream=None):
        """Zero the state of one stream, or of all streams (stream None)."""
        self._L.check(self._L.f.fl_session_reset(self.handle, -1 if stream is None else int(stream)))

    def get_state(self, batch=None):
        """(h, c) of streams 0..batch-1 (default max_batch), each (L, batch, H)."""
        batch = self.max_batch if batch is None else int(batch)
        h = np.empty(self.model.state_shape(batch, False), np.float32)
        c = np.empty(self.model.state_shape(batch, True), np.float32)
        self._L.check(self._L.f.fl_session_get_state(self.handle, batch, h.ctypes.data, c.ctypes.data))
        return h, c

    def set_state(self, h=None, c=None):
        """Set the state of streams 0..B-1 from h and c, each (L, B, H) float32 (None: zeros),
        e.g. the h_n, c_n of a run, so that streaming continues from there."""
        if h is None and c is None:
            raise _fail("ArgError", "set_state: give h, c or both")
        B = (h if h is not None else c).shape[1]
        h = self.model._check_state(h, "h", B, 0)
        c = self.model._check_state(c, "c", B, 1)
        self._L.check(self._L.f.fl_session_set_state(self.handle, B, _ptr(h), _ptr(c)))


def ctypes_byref(obj):
    return _lib.ctypes.byref(obj)


# ---------------------------------------------------------------- module functions


def load(path):
    """Load a model from a safetensors file (fl_model_load: header, offsets, shapes and
    finiteness are all checked). Raises IOError for a missing file, FormatError / VersionError /
    ShapeError / NonFiniteError for a bad one, with the library's message naming the file."""
    L = _lib.get()
    out = _lib.c_void_p()
    L.check(L.f.fl_model_load(os.fsencode(path), ctypes_byref(out)))
    return Model(out.value)


def init(input, hidden, layers=1, vocab=0, head="none", head_out=0, specs=None, seed=0):
    """A new model with PyTorch's default initialisation from a deterministic generator (as
    `fastlstm init`). vocab > 0 adds an embedding (token inputs, `input` its dimension); head is
    'none', 'per_step' or 'last_step' with head_out outputs. specs: optional per-matrix storage
    (see decompose())."""
    L = _lib.get()
    if head not in HEADS:
        raise _fail("ArgError", "head %r: expected one of %s" % (head, ", ".join(HEADS)))
    a = L.S.fl_arch(vocab=vocab, input=input, hidden=hidden, layers=layers, head=HEADS.index(head),
                    head_out=head_out)
    arr = None
    if specs is not None:
        arr = _spec_array(L, specs)
    out = _lib.c_void_p()
    L.check(L.f.fl_model_create(ctypes_byref(a), arr, ctypes_byref(out)))
    m = Model(out.value)
    L.check(L.f.fl_model_init_random(m.handle, int(seed)))
    return m


def _spec(s):
    """('svd', 16), 'svd:16', 'dense' -> (method code, rank)."""
    if isinstance(s, str):
        method, _, rank = s.partition(":")
        s = (method, int(rank) if rank else 0)
    method, rank = s
    return method_code(method), int(rank)


def _spec_array(L, specs):
    specs = [_spec(s) for s in specs]
    arr = (L.S.fl_mat_spec * len(specs))()
    for i, (m, r) in enumerate(specs):
        arr[i].method, arr[i].rank = m, r
    return arr


def decompose(model, method="svd", rank=0, tol=0.0, budget=0.0, include_head=False, specs=None,
              cp_max_iter=200, cp_tol=1e-7, seed=0, progress=None):
    """A new model with low-rank weight matrices (fl_model_decompose), as `fastlstm decompose`.

    method: 'svd', 'cp' or 'dense' for the LSTM gate matrices; each rank is `rank` if > 0, else the
    smallest with relative Frobenius error <= tol, else the largest within `budget` x the dense
    parameters. include_head also SVD-decomposes the head. specs: optional list with one entry per
    matrix (model.matrices() order): 'dense', 'svd:16', ('cp', 32), ... Decomposed matrices of the
    input are reconstructed first. progress(event) is called before and after each matrix with a
    dict (index, done, method, rank, cp_iterations, cp_converged, rel_error, seconds; a library
    without fl_model_decompose_ex raises UnsupportedError). Raises ArgError (no rank/tol/budget,
    rank too large, CP on the head), NumericError (LAPACK failure)."""
    L = _lib.get()
    o = L.default("fl_decomp_opts")
    o.method, o.rank, o.tol, o.budget = method_code(method), int(rank), float(tol), float(budget)
    o.include_head, o.cp_max_iter, o.cp_tol, o.seed = int(bool(include_head)), int(cp_max_iter), float(cp_tol), int(seed)
    arr = None
    if specs is not None:
        n = L.f.fl_model_num_matrices(model.handle)
        if len(specs) != n:
            raise _fail("ArgError", "specs: %d entries for a model with %d matrices" % (len(specs), n))
        arr = _spec_array(L, specs)
        o.specs = _lib.ctypes.cast(arr, _lib.c_void_p)
    out = _lib.c_void_p()
    if progress is None:
        L.check(L.f.fl_model_decompose(model.handle, ctypes_byref(o), ctypes_byref(out)))
        return Model(out.value)
    if L.f.fl_model_decompose_ex is None:
        raise _fail("UnsupportedError", "decompose(progress=...): this libfastlstm has no fl_model_decompose_ex")
    failure = []

    def report(ctx, ev):
        if failure:
            return
        e = _lib.ctypes.cast(ev, _lib.ctypes.POINTER(L.S.fl_decomp_event)).contents
        d = {k: getattr(e, k) for k, _ in _lib.FIELDS["fl_decomp_event"]}
        d["method"], d["done"] = METHODS[d["method"]], bool(d["done"])
        try:
            progress(d)
        except BaseException as exc:  # no way to stop the C loop: re-raised when it returns
            failure.append(exc)
    cb = _lib.decomp_progress_fn(report)
    st = L.f.fl_model_decompose_ex(model.handle, ctypes_byref(o), cb, None, ctypes_byref(out))
    result = Model(out.value) if st == 0 else None
    if failure:
        if result is not None:
            result.close()
        raise failure[0]
    L.check(st)
    return result
