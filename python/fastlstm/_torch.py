"""PyTorch in and out: from_torch() writes the module through tools/export_torch.py (the one mapping
from nn.LSTM / nn.Embedding / nn.Linear to the model file; shipped in this package as
_export_torch.py) and loads the file; to_torch() builds the modules from Model.weights(dense=True).
Imported only when used, so the package itself does not need torch."""
import os
import tempfile

import torch

from . import _export_torch
from ._lib import BY_NAME
from ._model import load


class FastLSTMModule(torch.nn.Module):
    """nn.Embedding (optional) -> nn.LSTM(batch_first=True) -> nn.Linear (optional), applied per
    step or to the last step: the function a fastlstm model computes, in PyTorch.
    forward(x, state=None) -> (y, (h_n, c_n)) with the shapes of Model.run."""

    def __init__(self, lstm, embedding=None, head=None, head_kind="none"):
        super().__init__()
        self.embedding = embedding
        self.lstm = lstm
        self.head = head
        self.head_kind = head_kind if head is not None else "none"

    def forward(self, x, state=None):
        if self.embedding is not None:
            x = self.embedding(x)
        y, (h, c) = self.lstm(x, state)
        if self.head_kind == "per_step":
            y = self.head(y)
        elif self.head_kind == "last_step":
            y = self.head(y[:, -1])
        return y, (h, c)


def from_torch(module, embedding=None, head=None, head_kind=None):
    """A Model with the weights of a PyTorch LSTM.

    module: an nn.LSTM (then embedding: optional nn.Embedding in front, head: optional nn.Linear
    after it, head_kind 'per_step' (default) or 'last_step'), or any module with attributes `lstm`
    and optionally `embedding`, `head` and `head_kind` (such as the result of Model.to_torch()).
    The mapping is tools/export_torch.py's (the same file the CLI documents). Raises ValueError
    for what the model format cannot hold (as export_torch.py does) and the library's errors."""
    if not isinstance(module, torch.nn.LSTM):
        lstm = getattr(module, "lstm", None)
        if not isinstance(lstm, torch.nn.LSTM):
            raise BY_NAME["ArgError"]("from_torch: %s is not an nn.LSTM and has no nn.LSTM `lstm`"
                                      % type(module).__name__)
        embedding = getattr(module, "embedding", None) if embedding is None else embedding
        head = getattr(module, "head", None) if head is None else head
        head_kind = getattr(module, "head_kind", None) if head_kind is None else head_kind
        module = lstm
    if head_kind == "none":
        head, head_kind = None, "per_step"
    elif head_kind is None:
        head_kind = "per_step"
    with tempfile.TemporaryDirectory(prefix="fastlstm-") as d:
        path = os.path.join(d, "model.safetensors")
        _export_torch.export(module, path, embedding=embedding, head=head, head_kind=head_kind)
        return load(path)


def to_torch(model):
    """FastLSTMModule with the model's dense-reconstructed weights (float32)."""
    a = model.arch
    w = model.weights(dense=True)
    t = lambda name: torch.from_numpy(w[name])  # noqa: E731
    extra = {}
    if a.bidirectional:
        extra["bidirectional"] = True
    if a.proj:
        extra["proj_size"] = a.proj
    lstm = torch.nn.LSTM(a.input, a.hidden, num_layers=a.layers, batch_first=True, **extra)
    emb = torch.nn.Embedding(a.vocab, a.input, padding_idx=a.padding_idx) if a.vocab else None
    features = (2 if a.bidirectional else 1) * (a.proj or a.hidden)
    head = torch.nn.Linear(features, a.head_out) if a.head != "none" else None
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            p.copy_(t("lstm." + name))
        if emb is not None:
            emb.weight.copy_(t("embedding.weight"))
        if head is not None:
            head.weight.copy_(t("head.weight"))
            head.bias.copy_(t("head.bias"))
    return FastLSTMModule(lstm, emb, head, a.head)
