"""Shared fixtures: the package from this source tree (python/), PyTorch reference models in
float64, and a scratch directory. FASTLSTM_LIB names the libfastlstm.so under test."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastlstm  # noqa: E402

TOL = 1e-5  # as the C golden tests: max abs error, relative to the reference's scale


def assert_close(got, ref, tol=TOL, what="output"):
    """max |got - ref| <= tol * max(1, max |ref|)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, "%s: shape %s, reference %s" % (what, got.shape, ref.shape)
    err = float(np.max(np.abs(got - ref))) if got.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    assert err <= tol * scale, "%s: max abs error %.3g > %.3g" % (what, err, tol * scale)


def torch_model(vocab=0, input_size=6, hidden=10, layers=1, head="none", head_out=0, seed=0):
    """(embedding, lstm, head) with PyTorch's default initialisation."""
    import torch
    torch.manual_seed(seed)
    emb = torch.nn.Embedding(vocab, input_size) if vocab else None
    lstm = torch.nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True)
    lin = torch.nn.Linear(hidden, head_out) if head != "none" else None
    return emb, lstm, lin


def torch_reference(emb, lstm, lin, head, x, h0=None, c0=None):
    """PyTorch's output in float64 for batch-major x: (y, (h_n, c_n)) as NumPy arrays."""
    import copy
    import torch
    with torch.no_grad():
        lstm64 = copy.deepcopy(lstm).double()
        if emb is not None:
            inp = copy.deepcopy(emb).double()(torch.from_numpy(np.asarray(x, np.int64)))
        else:
            inp = torch.from_numpy(np.asarray(x, np.float64))
        state = None
        if h0 is not None:
            state = (torch.from_numpy(h0.astype(np.float64)), torch.from_numpy(c0.astype(np.float64)))
        y, (h, c) = lstm64(inp, state)
        if head != "none":
            lin64 = copy.deepcopy(lin).double()
            y = lin64(y) if head == "per_step" else lin64(y[:, -1])
    return y.numpy(), (h.numpy(), c.numpy())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
