"""Bidirectional layers, projections (LSTMP) and variable lengths against PyTorch, for a library
that has them (fl_run_state_size came with them); skipped with the reason otherwise."""
import copy

import numpy as np
import pytest

import fastlstm
from conftest import assert_close

pytestmark = pytest.mark.skipif(not fastlstm._lib.get().has["fl_run_state_size"],
                                reason="this libfastlstm has no bidirectional layers or projections")


@pytest.mark.parametrize("kw", [dict(bidirectional=True), dict(proj_size=5), dict(bidirectional=True, proj_size=4)])
@pytest.mark.parametrize("head", ["none", "per_step", "last_step"])
def test_packed_run_matches_torch(rng, kw, head):
    import torch
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(6, 9, num_layers=2, batch_first=True, **kw)
    width = (2 if kw.get("bidirectional") else 1) * (kw.get("proj_size") or 9)
    lin = torch.nn.Linear(width, 3) if head != "none" else None
    m = fastlstm.from_torch(lstm, head=lin, head_kind=head)
    assert m.arch.bidirectional == bool(kw.get("bidirectional")) and m.arch.proj == kw.get("proj_size", 0)
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    lengths = np.array([5, 2, 4])
    y, (h, c) = m.run(x, lengths=lengths)
    with torch.no_grad():
        l64 = copy.deepcopy(lstm).double()
        packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x).double(), torch.from_numpy(lengths),
                                                         batch_first=True, enforce_sorted=False)
        out, (rh, rc) = l64(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
        if head == "per_step":  # the library leaves steps past a sequence's end zero, as without a head
            valid = torch.from_numpy(np.arange(5)[None, :, None] < lengths[:, None, None])
            out = copy.deepcopy(lin).double()(out) * valid
        elif head == "last_step":
            out = copy.deepcopy(lin).double()(out[np.arange(3), lengths - 1])
    assert_close(y, out.numpy())
    assert_close(h, rh.numpy())
    assert_close(c, rc.numpy())
    t = m.to_torch()
    assert t.lstm.bidirectional == bool(kw.get("bidirectional")) and t.lstm.proj_size == kw.get("proj_size", 0)
    assert_close(fastlstm.from_torch(t).run(x)[0], m.run(x)[0], tol=0)


def test_padding_idx_round_trip(rng):
    import torch
    torch.manual_seed(2)
    emb = torch.nn.Embedding(10, 4, padding_idx=3)
    lstm = torch.nn.LSTM(4, 6, batch_first=True)
    m = fastlstm.from_torch(lstm, embedding=emb)
    assert m.arch.padding_idx == 3
    t = m.to_torch()
    assert t.embedding.padding_idx == 3
    assert fastlstm.from_torch(t).arch.padding_idx == 3


def test_bidirectional_cannot_stream():
    import torch
    m = fastlstm.from_torch(torch.nn.LSTM(4, 6, bidirectional=True))
    with pytest.raises(fastlstm.UnsupportedError):
        m.session().step(np.zeros((1, 4), np.float32))
