"""fastlstm — fast LSTM inference and training on CPUs with low-rank (SVD, CP) weights.

A thin ctypes layer over libfastlstm.so (see python/README.md for why ctypes): NumPy arrays in and
out, the GIL released while the library runs, every library error raised as a subclass of
fastlstm.Error carrying the library's message.

    import numpy as np, fastlstm
    m = fastlstm.load("m.safetensors")                      # or fastlstm.from_torch(nn.LSTM(...))
    y, (h, c) = m.run(np.zeros((4, 35, m.arch.input), np.float32))
    small = fastlstm.decompose(m, method="svd", rank=64)
    small.save("m64.safetensors")

Functions: load, init, decompose, plan, train, finetune, evaluate, from_torch, version.
Classes: Model (run, session, info, matrices, weights, save, clone, to_torch), Session (step,
reset, run, get_state, set_state), Plan, Error and one subclass per fl_status.
The library is found through $FASTLSTM_LIB, next to this package, the CMake install prefix, or the
system's library path.
"""
from . import _lib
from ._lib import ERRORS as _ERRORS, Error
from ._model import Arch, Model, Session, decompose, init, load
from ._train import Plan, evaluate, finetune, plan, profile, train

for _cls in _ERRORS.values():
    globals()[_cls.__name__] = _cls
del _cls

__all__ = ["Arch", "Error", "Model", "Plan", "Session", "blas_core", "decompose", "evaluate", "finetune", "from_torch",
           "init", "load", "plan", "profile", "train", "version"] + [c.__name__ for c in _ERRORS.values()]


def version():
    """The library's version string (fl_version)."""
    return _lib.get().f.fl_version().decode()


def blas_core():
    """(core, advice): the core whose kernels OpenBLAS runs in this process, and the
    OPENBLAS_CORETYPE that matches this CPU when OpenBLAS fell back to generic kernels below it
    (None otherwise; fl_blas_core_advice). OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded
    (often by NumPy, before fastlstm), so act on the advice by setting it before Python starts.
    (None, None) with a library older than these functions."""
    f = _lib.get().f
    if f.fl_blas_core is None:
        return None, None
    advice = f.fl_blas_core_advice()
    return f.fl_blas_core().decode(), advice.decode() if advice else None


def from_torch(module, embedding=None, head=None, head_kind=None):
    """A Model from a PyTorch nn.LSTM (+ optional nn.Embedding / nn.Linear); see
    fastlstm._torch.from_torch. Needs torch."""
    from ._torch import from_torch as f
    return f(module, embedding=embedding, head=head, head_kind=head_kind)
