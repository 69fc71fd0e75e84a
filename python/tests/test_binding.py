"""The binding itself: struct layouts checked against the library, object lifetimes."""
import gc

import numpy as np
import pytest

import fastlstm
from fastlstm import _lib


def test_layout_mismatch_is_caught(monkeypatch):
    # A field list out of step with the library (two fields swapped) is refused, not used.
    path = _lib.get().path  # the shared Lib, loaded before the change
    fields = list(_lib.FIELDS["fl_train_opts"])
    fields[1], fields[2] = fields[2], fields[1]  # lr <-> momentum
    monkeypatch.setitem(_lib.FIELDS, "fl_train_opts", fields)
    lib = _lib.Lib(path)
    with pytest.raises(_lib.LayoutError) as e:
        lib.default("fl_train_opts")
    assert "fl_train_opts" in str(e.value)
    assert lib.default("fl_session_opts").max_seq == 256  # the others still work


def test_every_default_matches():
    lib = _lib.get()
    for name in _lib.DEFAULTS:
        lib.default(name)


def test_session_outlives_a_closed_model():
    m = fastlstm.init(3, 4, 1, seed=1)
    s = m.session()
    m.close()  # the library model stays until the session is closed
    assert s.step(np.ones((1, 3), np.float32)).shape == (1, 4)
    s.close()
    with pytest.raises(fastlstm.ArgError):
        m.run(np.zeros((1, 2, 3), np.float32))


def test_collected_in_any_order():
    # An exception's traceback makes a cycle holding the model, its cached session and a session of
    # its own; the collector finalises them in any order, and the library asserts that no session
    # outlives its model.
    for _ in range(3):
        m = fastlstm.init(3, 4, 1, vocab=5, seed=1)
        s = m.session()
        try:
            m.run(np.full((1, 2), 7, np.int32))
        except fastlstm.ArgError as e:
            err = e  # noqa: F841 (frame -> err -> traceback -> frame)
        del m, s
        gc.collect()


def test_session_keeps_its_model_alive():
    s = fastlstm.init(3, 4, 1, seed=1).session()
    gc.collect()
    assert s.step(np.ones((1, 3), np.float32)).shape == (1, 4)


def test_cached_sessions_do_not_keep_the_model():
    import weakref
    m = fastlstm.init(3, 4, 1, seed=1)
    m.run(np.zeros((1, 2, 3), np.float32))
    r = weakref.ref(m)
    del m
    assert r() is None  # freed at once: no reference cycle through the cached session


def test_blas_core():
    core, advice = fastlstm.blas_core()
    assert isinstance(core, str) and core
    assert advice in (None, "SkylakeX", "Haswell")
    if advice is None:
        return
    # OpenBLAS here runs kernels below the CPU: a process started with the advised core runs it
    import os
    import subprocess
    import sys
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(fastlstm.__file__)))
    env = dict(os.environ, OPENBLAS_CORETYPE=advice, PYTHONPATH=pkg)
    out = subprocess.run([sys.executable, "-c", "import fastlstm; print(*fastlstm.blas_core())"], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [advice, "None"], out
