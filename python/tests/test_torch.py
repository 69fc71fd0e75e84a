"""Round trips to and from PyTorch, files, and decomposition at full rank."""
import numpy as np
import pytest

import fastlstm
from conftest import assert_close, torch_model, torch_reference


@pytest.mark.parametrize("vocab,head", [(0, "none"), (15, "per_step"), (0, "last_step")])
def test_torch_round_trip(rng, vocab, head):
    import torch
    emb, lstm, lin = torch_model(vocab, 6, 9, 2, head, 4 if head != "none" else 0, seed=11)
    m = fastlstm.from_torch(lstm, embedding=emb, head=lin, head_kind=head)
    t = m.to_torch()
    ref = dict(lstm.state_dict())
    for name, p in t.lstm.state_dict().items():
        assert torch.equal(p, ref[name]), name
    if emb is not None:
        assert torch.equal(t.embedding.weight, emb.weight)
    if lin is not None:
        assert torch.equal(t.head.weight, lin.weight) and torch.equal(t.head.bias, lin.bias)
    x = rng.integers(0, vocab, (2, 5)) if vocab else rng.standard_normal((2, 5, 6)).astype(np.float32)
    with torch.no_grad():
        ty, (th, tc) = t(torch.from_numpy(x))
    y, (h, c) = m.run(x)
    assert_close(y, ty.numpy())
    assert_close(h, th.numpy())
    # and back again: the module returned by to_torch is accepted by from_torch
    m2 = fastlstm.from_torch(t)
    assert_close(m2.run(x)[0], y, tol=0)


def test_save_load_round_trip(tmp_path, rng):
    m = fastlstm.init(5, 8, 2, head="per_step", head_out=6, seed=2)
    p = tmp_path / "m.safetensors"
    m.save(p)
    m2 = fastlstm.load(str(p))
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    assert_close(m2.run(x)[0], m.run(x)[0], tol=0)
    for name, w in m.weights().items():
        assert np.array_equal(w, m2.weights()[name]), name


def test_svd_full_rank_reproduces_dense(rng):
    emb, lstm, lin = torch_model(0, 6, 8, 2, "per_step", 3, seed=3)
    m = fastlstm.from_torch(lstm, head=lin)
    full = ["svd:%d" % min(x["rows"], x["cols"]) for x in m.matrices()]
    d = fastlstm.decompose(m, specs=full)
    mats = d.matrices()
    assert [x["method"] for x in mats] == ["svd"] * 5
    assert all(0 <= x["rel_error"] < 1e-5 for x in mats)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    ry, (rh, rc) = torch_reference(None, lstm, lin, "per_step", x)
    y, (h, c) = d.run(x)
    assert_close(y, ry)
    assert_close(h, rh)
    assert_close(c, rc)
    dense = d.weights(dense=True)
    for name, w in m.weights().items():
        assert_close(dense[name], w, what=name)
    stored = d.weights(dense=False)
    assert "lstm.weight_hh_l0.U" in stored and "lstm.weight_hh_l0" not in stored


def test_cp_and_low_rank(rng):
    m = fastlstm.init(6, 8, 1, head="per_step", head_out=3, seed=5)
    d = fastlstm.decompose(m, method="cp", rank=5, include_head=False, seed=1)
    mats = d.matrices()
    assert [(x["method"], x["rank"]) for x in mats] == [("cp", 5), ("cp", 5), ("dense", 0)]
    w, dw = m.weights(), d.weights()
    for x in mats[:2]:  # the recorded error is that of the reconstruction weights() returns
        a, b = w[x["name"]].astype(np.float64), dw[x["name"]].astype(np.float64)
        assert abs(np.linalg.norm(a - b) / np.linalg.norm(a) - x["rel_error"]) < 1e-4
    assert "lstm.weight_hh_l0.A" in d.weights(dense=False)
    s = fastlstm.decompose(m, method="svd", tol=0.3)
    assert all(x["rel_error"] <= 0.3 for x in s.matrices()[:2])


def test_decomposed_to_torch_matches_run(rng):
    import torch
    m = fastlstm.decompose(fastlstm.init(6, 16, 2, head="last_step", head_out=3, seed=4), method="svd", rank=4)
    t = m.to_torch()
    x = rng.standard_normal((2, 5, 6)).astype(np.float32)
    with torch.no_grad():
        ty = t.double()(torch.from_numpy(x).double())[0].numpy()
    assert_close(m.run(x)[0], ty)


def test_decompose_progress():
    if fastlstm._lib.get().f.fl_model_decompose_ex is None:
        pytest.skip("this libfastlstm has no fl_model_decompose_ex")
    m = fastlstm.init(6, 8, 1, head="per_step", head_out=3, seed=5)
    events = []
    d = fastlstm.decompose(m, method="svd", rank=3, progress=events.append)
    assert [(e["index"], e["done"]) for e in events] == [(0, False), (0, True), (1, False), (1, True),
                                                        (2, False), (2, True)]
    assert events[1]["method"] == "svd" and events[1]["rank"] == 3
    assert abs(events[3]["rel_error"] - d.matrices()[1]["rel_error"]) < 1e-12
