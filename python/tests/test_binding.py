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


def test_close_with_open_session_is_refused():
    m = fastlstm.init(3, 4, 1, seed=1)
    s = m.session()
    with pytest.raises(fastlstm.ArgError):
        m.close()
    s.step(np.zeros((1, 3), np.float32))
    s.close()
    m.close()
    with pytest.raises(fastlstm.ArgError):
        m.run(np.zeros((1, 2, 3), np.float32))


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
