"""Training, fine-tuning, evaluation and planning from NumPy arrays."""
import json
import os

import numpy as np
import pytest

import fastlstm


def separable(rng, n=96, T=6, D=3):
    """Two classes told apart by the sign of the first feature's mean."""
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, T, D)).astype(np.float32) * 0.5
    x[:, :, 0] += np.where(y == 1, 1.0, -1.0)[:, None]
    return x, y


def test_train_classifier(rng):
    x, y = separable(rng)
    losses = []
    m = fastlstm.train(x, y, hidden=8, epochs=6, batch=16, lr=0.02, seed=3,
                       callback=lambda p: losses.append(p["loss"]))
    assert m.arch.head == "last_step" and m.arch.head_out == 2
    r = fastlstm.evaluate(m, x, y)
    assert r["count"] == len(y)
    assert r["accuracy"] > 0.9, r
    assert losses[-1] < losses[0]


def test_train_stops_when_callback_says_so(rng):
    x, y = separable(rng)
    seen = []
    fastlstm.train(x, y, hidden=4, epochs=50, batch=16, callback=lambda p: seen.append(p["step"]) or False)
    assert seen == [1]


def test_callback_exception_propagates(rng):
    x, y = separable(rng)

    def boom(p):
        raise KeyError("stop")
    with pytest.raises(KeyError):
        fastlstm.train(x, y, hidden=4, epochs=2, callback=boom)


def test_train_tokens_and_decomposed(rng):
    ids = rng.integers(0, 12, (40, 5))
    labels = (ids[:, -1] % 2).astype(np.int64)
    m = fastlstm.train(ids, labels, vocab=12, embed=6, hidden=8, epochs=1, decompose="svd:3")
    assert [x["method"] for x in m.matrices()] == ["svd", "svd", "dense"]
    assert m.arch.vocab == 12


def test_finetune_leaves_the_input_alone(rng):
    x, y = separable(rng)
    m = fastlstm.train(x, y, hidden=8, epochs=1, seed=2)
    small = fastlstm.decompose(m, method="svd", rank=2)
    before = small.weights(dense=False)
    tuned = fastlstm.finetune(small, x, y, epochs=2, lr=0.01)
    after = small.weights(dense=False)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    changed = tuned.weights(dense=False)
    assert not np.array_equal(changed["lstm.weight_hh_l0.U"], before["lstm.weight_hh_l0.U"])
    assert [x["method"] for x in tuned.matrices()] == ["svd", "svd", "dense"]


def test_train_errors(rng):
    x, y = separable(rng)
    with pytest.raises(fastlstm.ShapeError):
        fastlstm.train(x, y[:10])
    with pytest.raises(TypeError):
        fastlstm.train(x, y, epochs=1, no_such_option=1)
    with pytest.raises(fastlstm.ArgError):
        fastlstm.train(x, y, epochs=1, optim="lbfgs")
    x[0, 0, 0] = np.nan
    with pytest.raises(fastlstm.NonFiniteError) as e:
        fastlstm.train(x, y, epochs=1)
    assert "non-finite" in str(e.value)


def test_plan_keeps_the_budget(rng):
    x, y = separable(rng, n=64, D=8)
    m = fastlstm.train(x, y, hidden=32, epochs=2, lr=0.02)
    messages = []
    p = fastlstm.plan(m, x, y, max_loss=5.0, measure=False, verify=0, max_evals=20,
                      progress=messages.append)
    assert p.metric == "accuracy" and p.budget == 5.0
    assert p.points[0]["specs"] == ["dense"] * 3
    chosen = p.points[p.chosen]
    assert chosen["meets_budget"] and chosen["loss"] <= 5.0
    assert len(p.reasons) == 3 and all(p.reasons)
    assert [x["method"] for x in p.model.matrices()] == [s.split(":")[0] for s in chosen["specs"]]
    acc = fastlstm.evaluate(p.model, x, y)["accuracy"] * 100
    assert acc >= fastlstm.evaluate(m, x, y)["accuracy"] * 100 - 5.0 - 1e-9
    assert p.certificate["available"] and p.certificate["count"] == 32  # half of the data held back
    assert p.certificate["certified"] == (p.points[p.chosen]["certified"] is True)
    with pytest.raises(fastlstm.ArgError):
        fastlstm.plan(m, x, y, max_loss=-1, measure=False, verify=0)


def test_plan_with_certify_data_and_without_labels(rng):
    x, y = separable(rng, n=48, D=8)
    m = fastlstm.train(x, y, hidden=16, epochs=1)
    cx, cy = separable(rng, n=40, D=8)
    p = fastlstm.plan(m, x, y, max_loss=10.0, certify=(cx, cy), measure=False, verify=0, max_evals=10)
    assert p.certificate["count"] == 40
    d = fastlstm.plan(m, measure=False, verify=0, max_evals=10, max_dev=0.1)  # random inputs, deviation
    assert d.metric == "deviation" and not d.certificate["available"]
    assert d.points[d.chosen]["loss"] <= 0.1


def test_train_language_model(rng):
    stream = np.tile(np.arange(6), 80)  # 0 1 2 3 4 5 0 1 ...: every next token is predictable
    m = fastlstm.train(stream, vocab=6, embed=8, hidden=16, epochs=4, batch=4, bptt=10, lr=0.02)
    assert m.arch.head == "per_step" and m.arch.head_out == 6 and m.arch.vocab == 6
    r = fastlstm.evaluate(m, stream, batch=4, bptt=10)
    assert r["perplexity"] < 3.0, r  # uniform guessing: 6
    y, _ = m.run(stream[None, :12])
    assert (y[0, :-1].argmax(-1) == stream[1:12]).mean() > 0.8


def padded(rng, n=80, T=10, D=4):
    """separable() with a length per sequence, the steps past it loud noise."""
    x, y = separable(rng, n, T, D)
    lengths = rng.integers(1, T + 1, n)
    for i in range(n):
        x[i, lengths[i]:] = rng.standard_normal((T - lengths[i], D)) * 4.0
    return x, y, lengths.astype(np.int32)


def accuracy(model, x, y, lengths=None):
    out, _ = model.run(x, lengths=lengths)
    return 100.0 * float(np.mean(out.argmax(-1) == y))


def test_plan_judges_sequences_with_their_lengths(rng):
    x, y, lengths = padded(rng)
    m = fastlstm.train(x, y, hidden=12, epochs=2, lr=0.02, seed=5)
    want = accuracy(m, x, y, lengths)
    assert want != accuracy(m, x, y)  # the noise past each length would change the answer
    assert abs(fastlstm.evaluate(m, x, y, lengths=lengths)["accuracy"] * 100 - want) < 1e-9
    p = fastlstm.plan(m, x, y, lengths=lengths, max_loss=50, certify_fraction=0, measure=False, verify=0,
                      max_evals=4)
    assert abs(p.points[0]["metric"] - want) < 1e-9
    # certify data with lengths; the split of the validation data keeps each sequence's length
    cx, cy, cl = padded(rng, n=60)
    p = fastlstm.plan(m, x, y, lengths=lengths, max_loss=50, certify=(cx, cy, cl), measure=False, verify=0,
                      max_evals=4)
    assert abs(p.certificate["dense_metric"] - accuracy(m, cx, cy, cl)) < 1e-9
    s = fastlstm.plan(m, x, y, lengths=lengths, max_loss=50, measure=False, verify=0, max_evals=4)
    n1, n2 = s.certificate["search_count"], s.certificate["count"]
    assert n1 + n2 == len(y)
    right = s.points[0]["metric"] * n1 + s.certificate["dense_metric"] * n2
    assert abs(right - want * len(y)) < 1e-6
    with pytest.raises(fastlstm.DataError):
        fastlstm.plan(m, x, y, lengths=np.full(len(y), 11), measure=False, verify=0)
    with pytest.raises(fastlstm.ShapeError):
        fastlstm.plan(m, x, y, lengths=lengths[:5], measure=False, verify=0)
    with pytest.raises(fastlstm.ArgError):
        fastlstm.plan(m, lengths=lengths, measure=False, verify=0)


def int8_profile(path):
    """This machine's detected profile (no measuring) with int8 kernels posed 4x faster than f32, so
    that int8 is predicted faster whatever this machine is and whatever profile it has saved."""
    from fastlstm import _lib
    L = _lib.get()
    L.check(L.f.fl_profile_save(fastlstm.profile(measure=False), os.fsencode(path)))
    with open(path) as f:
        p = json.load(f)
    fast = 4 * p["gemv_flops"]
    p["quant"]["int8"] = {k: [fast] * len(v) for k, v in p["quant"]["int8"].items()}
    with open(path, "w") as f:
        json.dump(p, f)
    return str(path)


def test_plan_precisions(rng, tmp_path):
    x, y = separable(rng, n=64, D=8)
    m = fastlstm.train(x, y, hidden=32, epochs=2, lr=0.02)
    kw = dict(max_loss=20.0, certify_fraction=0, profile_path=int8_profile(tmp_path / "p.json"), verify=0,
              max_evals=40)
    f32 = fastlstm.plan(m, x, y, **kw)
    assert all(q == "f32" for pt in f32.points for q in pt["precisions"])
    q = fastlstm.plan(m, x, y, precisions=["f32", "int8"], **kw)
    assert any("int8" in pt["precisions"] for pt in q.points)
    assert not any("bf16" in pt["precisions"] for pt in q.points)
    b = fastlstm.plan(m, x, y, precisions=1 << 2, **kw)  # the bit mask of int8
    assert [(pt["specs"], pt["precisions"]) for pt in b.points] == [(pt["specs"], pt["precisions"]) for pt in q.points]
    with pytest.raises(fastlstm.ArgError):
        fastlstm.plan(m, x, y, precisions="fp8", **kw)
