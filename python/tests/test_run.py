"""Model.run and Session.step against PyTorch on the same weights."""
import numpy as np
import pytest

import fastlstm
from conftest import assert_close, torch_model, torch_reference

CASES = [  # (vocab, input, hidden, layers, head, head_out)
    (0, 6, 10, 1, "none", 0),
    (0, 7, 17, 2, "per_step", 5),
    (0, 5, 9, 3, "last_step", 4),
    (20, 8, 12, 2, "none", 0),
    (20, 8, 12, 1, "per_step", 20),
    (30, 4, 7, 2, "last_step", 3),
]


def inputs(rng, vocab, D, B, T):
    if vocab:
        return rng.integers(0, vocab, size=(B, T))  # int64, converted after a range check
    return rng.standard_normal((B, T, D)).astype(np.float32)


@pytest.mark.parametrize("vocab,D,H,L,head,out", CASES)
def test_run_matches_torch(rng, vocab, D, H, L, head, out):
    emb, lstm, lin = torch_model(vocab, D, H, L, head, out, seed=vocab + D + L)
    m = fastlstm.from_torch(lstm, embedding=emb, head=lin, head_kind=head)
    assert m.arch == fastlstm.Arch(vocab, D, H, L, head, out, False, 0, None)
    x = inputs(rng, vocab, D, 3, 11)
    h0 = rng.standard_normal((L, 3, H)).astype(np.float32)
    c0 = rng.standard_normal((L, 3, H)).astype(np.float32)
    for state in (None, (h0, c0)):
        y, (h, c) = m.run(x) if state is None else m.run(x, h0=h0, c0=c0)
        ry, (rh, rc) = torch_reference(emb, lstm, lin, head, x, *(state or (None, None)))
        assert_close(y, ry, what="y")
        assert_close(h, rh, what="h_n")
        assert_close(c, rc, what="c_n")


@pytest.mark.parametrize("vocab,D,H,L,head,out", CASES)
def test_streaming_equals_run(rng, vocab, D, H, L, head, out):
    m = fastlstm.init(D, H, L, vocab=vocab, head=head, head_out=out, seed=7)
    x = inputs(rng, vocab, D, 2, 9)
    y, (h, c) = m.run(x)
    with m.session(max_batch=2) as s:
        steps = [s.step(x[:, t]) for t in range(x.shape[1])]
        sh, sc = s.get_state()
    if head == "last_step":
        assert_close(steps[-1], y, what="last step")
    else:
        assert_close(np.stack(steps, axis=1), y, what="steps")
    assert_close(sh, h, what="h")
    assert_close(sc, c, what="c")


def test_session_state_continues_a_run(rng):
    m = fastlstm.init(4, 8, 2, seed=3)
    x = rng.standard_normal((2, 10, 4)).astype(np.float32)
    y, _ = m.run(x)
    _, (h, c) = m.run(x[:, :6])
    s = m.session(max_batch=2)
    s.set_state(h, c)
    tail = np.stack([s.step(x[:, t]) for t in range(6, 10)], axis=1)
    assert_close(tail, y[:, 6:])
    s.reset()
    assert not s.get_state()[0].any()


def test_time_major_and_threads(rng):
    m = fastlstm.init(5, 16, 2, head="per_step", head_out=3, seed=4)
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    y, (h, c) = m.run(x)
    yt, (ht, ct) = m.run(np.ascontiguousarray(x.transpose(1, 0, 2)), time_major=True, threads=2)
    assert_close(yt.transpose(1, 0, 2), y)
    assert_close(ht, h)
    assert_close(ct, c)


def test_lengths_match_packed_sequences(rng):
    import torch
    emb, lstm, lin = torch_model(0, 5, 8, 2, "none", 0, seed=5)
    m = fastlstm.from_torch(lstm)
    x = rng.standard_normal((4, 7, 5)).astype(np.float32)
    lengths = np.array([7, 3, 5, 3])
    y, (h, c) = m.run(x, lengths=lengths)
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x).double(), torch.from_numpy(lengths),
                                                         batch_first=True, enforce_sorted=False)
        out, (rh, rc) = lstm.double()(packed)
        ry, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=7)
    assert_close(y, ry.numpy())
    assert_close(h, rh.numpy())
    assert_close(c, rc.numpy())


def test_no_copy_for_contiguous_float32(rng):
    # A contiguous float32 array is handed over as is; a strided one is copied but gives the same result.
    from fastlstm._model import features
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    assert features(x, "x", 3, 4) is x
    m = fastlstm.init(4, 6, 1, seed=1)
    big = rng.standard_normal((2, 3, 8)).astype(np.float32)
    assert_close(m.run(big[:, :, ::2])[0], m.run(np.ascontiguousarray(big[:, :, ::2]))[0], tol=0)


def test_info_and_matrices():
    m = fastlstm.init(6, 10, 2, head="last_step", head_out=3)
    mats = m.matrices()
    assert [x["name"] for x in mats] == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1",
                                         "lstm.weight_hh_l1", "head.weight"]
    assert (mats[0]["rows"], mats[0]["cols"]) == (40, 6)
    assert [(x["kind"], x["layer"], x["direction"]) for x in mats] == [("ih", 0, 0), ("hh", 0, 0), ("ih", 1, 0),
                                                                       ("hh", 1, 0), ("head", -1, 0)]
    assert mats[1]["bytes"] == 4 * 40 * 10
    info = m.info()
    n = 40 * 6 + 40 * 10 + 2 * 40 + 40 * 10 + 40 * 10 + 2 * 40 + 3 * 10 + 3
    assert info["params"] == n
    assert info["head"] == "last_step"


def test_threads_share_a_model(rng):
    # Model.run keeps a session per thread: concurrent runs of one model give the serial results.
    import threading
    m = fastlstm.init(6, 12, 2, head="per_step", head_out=4, seed=9)
    xs = [rng.standard_normal((2, 8, 6)).astype(np.float32) for _ in range(4)]
    want = [m.run(x)[0] for x in xs]
    got = [None] * 4

    def work(i):
        for _ in range(20):
            got[i] = m.run(xs[i])[0]
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, w in zip(got, want):
        assert_close(g, w, tol=0)


def test_library_calls_release_the_gil():
    # ctypes.CDLL (unlike PyDLL) drops the GIL around each foreign call.
    import ctypes
    assert type(fastlstm._lib.get().dll) is ctypes.CDLL
