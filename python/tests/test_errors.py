"""Bad input raises the exception of the library's status, with the library's message."""
import numpy as np
import pytest

import fastlstm


@pytest.fixture
def model():
    return fastlstm.init(4, 6, 2, head="per_step", head_out=3, seed=1)


def test_missing_file(tmp_path):
    with pytest.raises(fastlstm.IOError) as e:
        fastlstm.load(str(tmp_path / "nope.safetensors"))
    assert "nope.safetensors" in str(e.value)
    assert isinstance(e.value, OSError) and isinstance(e.value, fastlstm.Error)
    assert e.value.status == -2 and e.value.status_name == "FL_ERR_IO"


def test_corrupt_file(tmp_path, model):
    p = tmp_path / "m.safetensors"
    model.save(str(p))
    blob = p.read_bytes()
    p.write_bytes(blob[:len(blob) // 2])  # truncated: offsets past the end of the file
    with pytest.raises(fastlstm.FormatError) as e:
        fastlstm.load(str(p))
    assert "m.safetensors" in str(e.value)
    p.write_bytes(b"\xff" * 8 + blob[8:])  # header length beyond the file
    with pytest.raises(fastlstm.FormatError):
        fastlstm.load(str(p))


def test_nan_input(model):
    x = np.zeros((2, 3, 4), np.float32)
    x[1, 2, 3] = np.nan
    with pytest.raises(fastlstm.NonFiniteError) as e:
        model.run(x)
    assert "x[batch 1, step 2, feature 3] is not finite" in str(e.value)
    h0 = np.zeros((2, 2, 6), np.float32)
    h0[0, 1, 5] = np.inf
    with pytest.raises(fastlstm.NonFiniteError):
        model.run(np.zeros((2, 3, 4), np.float32), h0=h0)


def test_wrong_shape(model):
    with pytest.raises(fastlstm.ShapeError) as e:
        model.run(np.zeros((2, 3, 5), np.float32))
    assert "expected (B, T, 4)" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(fastlstm.ShapeError):
        model.run(np.zeros((3, 4), np.float32))
    with pytest.raises(fastlstm.ShapeError):
        model.run(np.zeros((2, 3, 4), np.float32), h0=np.zeros((2, 3, 6), np.float32))
    with pytest.raises(fastlstm.ShapeError):
        model.session(max_batch=2).step(np.zeros((2, 5), np.float32))


def test_wrong_dtype(model):
    with pytest.raises(fastlstm.DtypeError) as e:
        model.run(np.zeros((2, 3, 4), np.float64))
    assert "float64" in str(e.value) and isinstance(e.value, TypeError)
    tok = fastlstm.init(4, 6, 1, vocab=10, seed=1)
    with pytest.raises(fastlstm.DtypeError):
        tok.run(np.zeros((2, 3), np.float32))


def test_token_out_of_range():
    m = fastlstm.init(4, 6, 1, vocab=10, seed=1)
    x = np.zeros((2, 3), np.int32)
    x[1, 2] = 10
    with pytest.raises(fastlstm.ArgError) as e:  # the library's check (int32 is passed through)
        m.run(x)
    assert "token id 10 at [batch 1, step 2] outside [0, 10)" in str(e.value)
    with pytest.raises(fastlstm.ArgError):  # int64: the binding's range check before converting
        m.run(np.full((2, 3), 2**40, np.int64))


def test_bad_arguments(model):
    with pytest.raises(fastlstm.ArgError) as e:
        fastlstm.decompose(model, method="svd")  # no rank, tol or budget
    assert "needs a rank, a tol or a budget" in str(e.value)
    with pytest.raises(fastlstm.ArgError):
        fastlstm.decompose(model, method="svd", rank=1000)
    with pytest.raises(fastlstm.ArgError):
        fastlstm.decompose(model, method="tucker", rank=2)
    with pytest.raises(fastlstm.ArgError):
        model.session(max_batch=0)
    s = model.session(max_batch=2)
    with pytest.raises(fastlstm.ArgError):
        s.step(np.zeros((3, 4), np.float32))  # more streams than max_batch
    with pytest.raises(fastlstm.ArgError):
        model.run(np.zeros((2, 3, 4), np.float32), lengths=[3, 4])


def test_every_status_has_a_class():
    for code in range(-11, 0):
        cls = fastlstm._lib.ERRORS[code]
        assert issubclass(cls, fastlstm.Error) and cls.status == code
        assert getattr(fastlstm, cls.__name__) is cls
        assert fastlstm._lib.get().f.fl_status_str(code).decode() == cls.status_name
