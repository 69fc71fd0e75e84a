"""The ctypes layer over libfastlstm.so: finding the library, the C structs, the function table,
status codes mapped to exceptions.

Everything that mirrors a C declaration is a table here, so a change to a public header is a
one-line edit: STRUCTS (field lists in declaration order), FUNCTIONS (name -> result, arguments),
STATUSES (code -> name, exception). Structs the library fills or returns by value get a zeroed
reserve tail, so a library whose struct has grown (fields are appended) never writes past the
Python buffer, and an appended input field reads as zero (its documented "off" value). Where a
header says what a *_default() function returns, Lib.default() compares those values with what
the struct read back the first time it is used: a binding out of step with the library fails
loudly (LayoutError) instead of passing shifted fields. Fields a newer library appends are in
APPENDED, used when the library has the function that came with them.

ctypes.CDLL releases the GIL around every foreign call, so other Python threads run while the
library computes; callbacks into Python (progress) take it back for their duration.
"""
import ctypes
import ctypes.util
import math
import os
import sys
import threading

from ctypes import (CFUNCTYPE, POINTER, c_char, c_char_p, c_double, c_float, c_int, c_long,
                    c_size_t, c_uint, c_uint64, c_void_p)

RESERVE = 512  # bytes of zeroed tail on every struct (see the module docstring)

# ---------------------------------------------------------------------------- errors


class Error(Exception):
    """Base of every fastlstm error. `status` is the library's fl_status code (negative int),
    `status_name` its name ("FL_ERR_SHAPE") and `message` the library's fl_last_error() detail
    (or the binding's own message for a check done before the call)."""

    status = None
    status_name = "FL_ERR"

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _error_class(name, code, status_name, doc, *bases):
    cls = type(name, (Error,) + bases, {"__doc__": doc, "status": code, "status_name": status_name})
    cls.__module__ = "fastlstm"
    return cls


# code -> (exception name, status name, extra builtin base, doc). One line per fl_status value.
STATUSES = {
    -1: ("NoMemoryError", "FL_ERR_NOMEM", MemoryError, "Allocation failed (FL_ERR_NOMEM)."),
    -2: ("IOError", "FL_ERR_IO", OSError, "Missing file, read or write failure (FL_ERR_IO)."),
    -3: ("FormatError", "FL_ERR_FORMAT", ValueError, "Malformed file: header, JSON, offsets, metadata (FL_ERR_FORMAT)."),
    -4: ("ShapeError", "FL_ERR_SHAPE", ValueError, "Shapes inconsistent with the model or each other (FL_ERR_SHAPE)."),
    -5: ("DtypeError", "FL_ERR_DTYPE", TypeError, "Unsupported element type (FL_ERR_DTYPE)."),
    -6: ("NonFiniteError", "FL_ERR_NONFINITE", ValueError, "NaN or Inf in weights or inputs (FL_ERR_NONFINITE)."),
    -7: ("ArgError", "FL_ERR_ARG", ValueError, "Invalid argument (FL_ERR_ARG)."),
    -8: ("NumericError", "FL_ERR_NUMERIC", ArithmeticError, "Numerical failure: LAPACK error, no convergence (FL_ERR_NUMERIC)."),
    -9: ("UnsupportedError", "FL_ERR_UNSUPPORTED", NotImplementedError, "A valid request this build or model cannot serve (FL_ERR_UNSUPPORTED)."),
    -10: ("VersionError", "FL_ERR_VERSION", ValueError, "File written by an incompatible format version (FL_ERR_VERSION)."),
    -11: ("DataError", "FL_ERR_DATA", ValueError, "Bad data set: label out of range, ragged, empty (FL_ERR_DATA)."),
}
ERRORS = {code: _error_class(n, code, sn, doc, base) for code, (n, sn, base, doc) in STATUSES.items()}
BY_NAME = {cls.__name__: cls for cls in ERRORS.values()}


def error_for(code, message):
    """The exception object for status `code` with `message`."""
    cls = ERRORS.get(code)
    if cls is None:
        err = Error("%s (status %d)" % (message, code))
        err.status = code
        return err
    return cls(message)


# ---------------------------------------------------------------------------- structs


def _struct(name, fields, reserve=True):
    """A ctypes Structure with `fields` (name, ctype) in declaration order, plus a zeroed tail."""
    f = list(fields)
    if reserve:
        f.append(("_reserve", c_char * RESERVE))
    return type(name, (ctypes.Structure,), {"_fields_": f})


plan_progress_fn = CFUNCTYPE(None, c_void_p, c_char_p)
train_callback_fn = CFUNCTYPE(c_int, c_void_p, c_void_p)
decomp_progress_fn = CFUNCTYPE(None, c_void_p, c_void_p)

# Field lists, as in include/fastlstm/*.h. Appended fields of a newer library that this binding
# uses are listed in APPENDED and added when the library has the function named there.
FIELDS = {
    "fl_arch": [("vocab", c_int), ("input", c_int), ("hidden", c_int), ("layers", c_int), ("head", c_int),
                ("head_out", c_int)],
    "fl_mat_spec": [("method", c_int), ("rank", c_int)],
    "fl_matrix_info": [("name", c_char * 48), ("method", c_int), ("rows", c_int), ("cols", c_int),
                       ("rank", c_int), ("params", c_size_t), ("flops", c_size_t), ("rel_error", c_double),
                       ("kind", c_int), ("layer", c_int), ("direction", c_int), ("precision", c_int),
                       ("bytes", c_size_t)],
    "fl_decomp_opts": [("method", c_int), ("rank", c_int), ("tol", c_double), ("budget", c_double),
                       ("include_head", c_int), ("specs", c_void_p), ("cp_max_iter", c_int),
                       ("cp_tol", c_double), ("seed", c_uint64)],
    "fl_session_opts": [("max_batch", c_int), ("max_seq", c_int), ("threads", c_int)],
    "fl_run_io": [("layout", c_int), ("batch", c_int), ("seq", c_int), ("x", c_void_p), ("tokens", c_void_p),
                  ("h0", c_void_p), ("c0", c_void_p), ("y", c_void_p), ("hn", c_void_p), ("cn", c_void_p)],
    "fl_plan_data": [("n", c_int), ("seq", c_int), ("dim", c_int), ("x", c_void_p), ("tokens", c_void_p),
                     ("labels", c_void_p), ("n_labels", c_int), ("lengths", c_void_p), ("left_padded", c_int)],
    "fl_plan_opts": [("batch", c_int), ("seq", c_int), ("threads", c_int), ("max_threads", c_int), ("data", c_void_p),
                     ("dataset", c_void_p), ("certify", c_void_p), ("certify_fraction", c_double),
                     ("confidence", c_double), ("certify_tries", c_int), ("finetune", c_void_p), ("train", c_void_p),
                     ("finetune_epochs", c_int), ("finetune_probe", c_double), ("max_loss", c_double), ("max_dev", c_double), ("dev_samples", c_int), ("allow_cp", c_int),
                     ("cp_max_iter", c_int), ("max_evals", c_int), ("verify", c_int), ("verify_reps", c_int),
                     ("seed", c_uint64), ("progress", plan_progress_fn), ("progress_ctx", c_void_p),
                     ("precisions", c_uint)],
    "fl_cost": [("params", c_size_t), ("step_bytes", c_double), ("step_flops", c_double),
                ("working_set", c_size_t), ("level", c_int), ("bandwidth", c_double), ("mem_seconds", c_double),
                ("compute_seconds", c_double), ("seconds", c_double), ("regime", c_int)],
    "fl_plan_certificate": [("available", c_int), ("certified", c_int), ("confidence", c_double), ("z", c_double),
                            ("count", c_size_t), ("search_count", c_size_t), ("dense_metric", c_double),
                            ("tried", c_int), ("finetuned", c_int), ("finetune_seconds", c_double),
                            ("search_seconds", c_double)],
    "fl_train_opts": [("optim", c_int), ("lr", c_float), ("momentum", c_float), ("beta1", c_float),
                      ("beta2", c_float), ("eps", c_float), ("weight_decay", c_float), ("clip", c_float),
                      ("dropout", c_float), ("batch", c_int), ("bptt", c_int), ("lr_decay", c_float),
                      ("patience", c_int), ("freeze_dense", c_int), ("shuffle", c_int), ("seed", c_uint64)],
    "fl_train_progress": [("epoch", c_int), ("step", c_long), ("epoch_step", c_long), ("epoch_steps", c_long),
                          ("loss", c_double), ("lr", c_double), ("items_per_s", c_double), ("eta_s", c_double),
                          ("epoch_end", c_int), ("valid_loss", c_double), ("valid_metric", c_double)],
    "fl_train_run": [("train", c_void_p), ("valid", c_void_p), ("epochs", c_int), ("max_steps", c_long),
                     ("checkpoint", c_char_p), ("every", c_long), ("callback", train_callback_fn),
                     ("user", c_void_p)],
    "fl_decomp_event": [("index", c_size_t), ("done", c_int), ("method", c_int), ("rank", c_int),
                        ("cp_iterations", c_int), ("cp_converged", c_int), ("rel_error", c_double),
                        ("seconds", c_double)],
    "fl_eval_result": [("loss", c_double), ("accuracy", c_double), ("perplexity", c_double),
                       ("count", c_size_t)],
}

# struct -> (probe function, fields appended by the library version that has it)
APPENDED = {
    "fl_arch": ("fl_run_state_size", [("bidirectional", c_int), ("proj", c_int), ("has_padding", c_int),
                                      ("padding_idx", c_int)]),
    "fl_run_io": ("fl_run_state_size", [("lengths", c_void_p)]),
    "fl_session_opts": ("fl_session_bidir_sched", [("bidir_sched", c_int)]),  # 0: the model's schedule
}
# appended after those, in order: struct -> [(probe function, fields)]
APPENDED_LATER = {
    "fl_session_opts": [("fl_session_set_step_sched", [("step_sched", c_int)])],  # 0: AUTO
}

# No reserve tail: fl_mat_spec is passed as an array, fl_cost sits inside fl_plan_point, and
# fl_session_opts (12 or 16 bytes) is returned in registers, which a tail would turn into a hidden
# pointer (Lib.default() catches a struct that changes class).
NO_RESERVE = {"fl_mat_spec", "fl_cost", "fl_session_opts"}

# Documented defaults: struct -> (default function, {field: value}); see Lib.default().
DEFAULTS = {
    "fl_session_opts": ("fl_session_opts_default", {"max_batch": 1, "max_seq": 256, "threads": 1}),
    "fl_decomp_opts": ("fl_decomp_opts_default", {"method": 1, "cp_max_iter": 200, "cp_tol": 1e-7, "seed": 0}),
    "fl_train_opts": ("fl_train_opts_default", {"optim": 1, "lr": 1e-3, "beta1": 0.9, "beta2": 0.999,
                                                "batch": 32, "bptt": 35, "lr_decay": 1.0, "shuffle": 1,
                                                "seed": 1}),
    "fl_plan_opts": ("fl_plan_opts_default", {"batch": 1, "seq": 35, "certify_fraction": 0.5, "confidence": 0.9,
                                              "certify_tries": 4, "finetune_epochs": 1, "max_dev": 0.05,
                                              "dev_samples": 16, "allow_cp": 1, "cp_max_iter": 40,
                                              "max_evals": 200}),
}

PROFILE_BYTES = 1 << 16  # fl_profile and fl_machine_id are passed only by pointer: opaque buffers


class _PlanPointBase(ctypes.Structure):
    pass


# ---------------------------------------------------------------------------- functions

P = c_void_p
FUNCTIONS = {
    # name: (restype, argtypes); struct names are resolved after the structs are built.
    "fl_status_str": (c_char_p, [c_int]),
    "fl_last_error": (c_char_p, []),
    "fl_version": (c_char_p, []),
    "fl_model_num_matrices": (c_size_t, [P]),
    "fl_model_create": (c_int, ["fl_arch*", P, POINTER(P)]),
    "fl_model_init_random": (c_int, [P, c_uint64]),
    "fl_model_load": (c_int, [c_char_p, POINTER(P)]),
    "fl_model_save": (c_int, [P, c_char_p]),
    "fl_model_clone": (c_int, [P, POINTER(P)]),
    "fl_model_free": (None, [P]),
    "fl_model_arch": ("fl_arch*", [P]),
    "fl_model_matrix_info": (c_int, [P, c_size_t, "fl_matrix_info*"]),
    "fl_model_num_params": (c_size_t, [P]),
    "fl_model_flops_per_step": (c_size_t, [P]),
    "fl_decomp_opts_default": ("fl_decomp_opts", []),
    "fl_model_decompose": (c_int, [P, "fl_decomp_opts*", POINTER(P)]),
    "fl_session_opts_default": ("fl_session_opts", []),
    "fl_session_create": (c_int, [P, "fl_session_opts*", POINTER(P)]),
    "fl_session_free": (None, [P]),
    "fl_session_set_threads": (c_int, [P, c_int]),
    "fl_run_output_size": (c_size_t, [P, c_int, c_int]),
    "fl_session_run": (c_int, [P, "fl_run_io*"]),
    "fl_session_step": (c_int, [P, c_int, P, P, P]),
    "fl_session_reset": (c_int, [P, c_int]),
    "fl_session_get_state": (c_int, [P, c_int, P, P]),
    "fl_session_set_state": (c_int, [P, c_int, P, P]),
    # plan.h
    "fl_profile_detect": (c_int, [P]),
    "fl_profile_measure": (c_int, [P]),
    "fl_profile_load": (c_int, [c_char_p, P]),
    "fl_profile_save": (c_int, [P, c_char_p]),
    "fl_profile_default_path": (c_int, [P, c_size_t]),
    "fl_plan_opts_default": ("fl_plan_opts", []),
    "fl_plan_create": (c_int, [P, P, "fl_plan_opts*", POINTER(P)]),
    "fl_plan_free": (None, [P]),
    "fl_plan_metric_kind": (c_int, [P]),
    "fl_plan_budget": (c_double, [P]),
    "fl_plan_num_points": (c_size_t, [P]),
    "fl_plan_point_at": ("fl_plan_point*", [P, c_size_t]),
    "fl_plan_chosen": (c_size_t, [P]),
    "fl_plan_reason": (c_char_p, [P, c_size_t]),
    "fl_plan_model": (P, [P]),
    "fl_plan_certificate_of": ("fl_plan_certificate*", [P]),
    # train.h
    "fl_dataset_classify": (c_int, [c_int, c_int, c_int, P, P, P, c_int, POINTER(P)]),
    "fl_dataset_lm": (c_int, [P, c_size_t, c_int, POINTER(P)]),
    "fl_dataset_free": (None, [P]),
    "fl_dataset_size": (c_size_t, [P]),
    "fl_train_opts_default": ("fl_train_opts", []),
    "fl_trainer_create": (c_int, [P, "fl_train_opts*", POINTER(P)]),
    "fl_trainer_free": (None, [P]),
    "fl_trainer_run": (c_int, [P, "fl_train_run*"]),
    "fl_trainer_steps": (c_long, [P]),
    "fl_model_evaluate": (c_int, [P, P, c_int, c_int, "fl_eval_result*"]),
}
# Functions a library may lack (newer or optional API): missing ones are None, callers check.
OPTIONAL = {"fl_run_state_size": (c_size_t, [P, c_int, c_int]),
            "fl_machine_id_detect": (c_int, [P]),
            "fl_profile_check_machine": (c_int, [P, P]),
            "fl_dataset_set_lengths": (c_int, [P, P]),
            "fl_session_bidir_sched": (c_int, [P]),  # probes of fields appended to fl_session_opts
            "fl_session_set_step_sched": (c_int, [P, c_int]),
            "fl_model_decompose_ex": (c_int, [P, "fl_decomp_opts*", "decomp_progress_fn", P, POINTER(P)]),
            "fl_blas_core": (c_char_p, []),
            "fl_blas_core_advice": (c_char_p, [])}


class Lib:
    """The loaded library: `lib.f.<name>` are the C functions, `lib.S.<struct>` the structs."""

    def __init__(self, path):
        self.path = path
        self.dll = ctypes.CDLL(path)  # CDLL (not PyDLL): the GIL is released during every call
        self.has = {name: hasattr(self.dll, name) for name in OPTIONAL}
        self.S = type("Structs", (), {})()
        for name, fields in FIELDS.items():
            fields = list(fields)
            if name in APPENDED and self.has.get(APPENDED[name][0]):
                fields += APPENDED[name][1]
                for probe, more in APPENDED_LATER.get(name, []):
                    if not self.has.get(probe):
                        break
                    fields += more
            setattr(self.S, name, _struct(name, fields, reserve=name not in NO_RESERVE))
        self.S.fl_plan_point = _struct("fl_plan_point", [
            ("specs", POINTER(self.S.fl_mat_spec)), ("cost", self.S.fl_cost), ("measured_seconds", c_double),
            ("metric", c_double), ("loss", c_double), ("meets_budget", c_int), ("pareto", c_int),
            ("certified", c_int), ("cert_metric", c_double), ("cert_loss", c_double), ("cert_se", c_double),
            ("cert_bound", c_double), ("precisions", POINTER(c_int))], reserve=False)
        self.f = type("Functions", (), {})()
        table = dict(FUNCTIONS)
        table.update({k: v for k, v in OPTIONAL.items() if self.has[k]})
        for name, (res, args) in table.items():
            try:
                fn = getattr(self.dll, name)
            except AttributeError:
                raise OSError("%s has no %s: a library older than this binding" % (path, name)) from None
            fn.restype = self._ctype(res)
            fn.argtypes = [self._ctype(a) for a in args]
            setattr(self.f, name, fn)
        for name in OPTIONAL:
            if not self.has[name]:
                setattr(self.f, name, None)
        self._checked = set()

    def default(self, struct):
        """The library's default of an options struct (fl_<x>_opts_default()), its layout checked
        against the documented defaults the first time (see check_layout)."""
        fn, expect = DEFAULTS[struct]
        got = getattr(self.f, fn)()
        if struct not in self._checked:
            check_layout(self, struct, got, fn, expect)
            self._checked.add(struct)
        return got

    def _ctype(self, t):
        if isinstance(t, str) and t in globals():
            return globals()[t]
        if isinstance(t, str):
            if t.endswith("*"):
                return POINTER(getattr(self.S, t[:-1]))
            return getattr(self.S, t)
        return t

    def check(self, status, what=None):
        """Raise the exception for a failing fl_status, with fl_last_error()'s message."""
        if status == 0:
            return
        detail = self.f.fl_last_error().decode("utf-8", "replace")
        if not detail:
            detail = self.f.fl_status_str(status).decode()
        raise error_for(status, detail if what is None else "%s: %s" % (what, detail))


class LayoutError(ImportError):
    """The binding's declaration of a C struct does not match the loaded library."""


def check_layout(lib, name, got, fn, expect):
    """Compare a struct's documented defaults with what its *_default() function returned: a
    field list out of step with the library reads them at the wrong offsets."""
    for field, value in expect.items():
        v = getattr(got, field)
        if not math.isclose(float(v), float(value), rel_tol=1e-6):
            raise LayoutError(
                "fastlstm: the Python binding's %s layout does not match %s (%s returned %s = %r, "
                "expected %r): update FIELDS in %s" % (name, lib.path, fn, field, v, value, __file__))


# ---------------------------------------------------------------------------- finding the library


def _candidates():
    env = os.environ.get("FASTLSTM_LIB")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for n in ("libfastlstm.so", "libfastlstm.so.0"):
        yield os.path.join(here, n)
    try:
        from . import _install  # written by `cmake --install`: where the library went
        yield os.path.normpath(os.path.join(here, _install.LIBDIR_FROM_PACKAGE, "libfastlstm.so.0"))
    except ImportError:
        pass
    found = ctypes.util.find_library("fastlstm")
    if found:
        yield found


_lock = threading.Lock()
_lib = None


def get():
    """The process-wide Lib, loaded on first use (FASTLSTM_LIB, next to the package, the CMake
    install prefix, then the system's library path)."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                tried.append("%s (no such file)" % path)
                continue
            try:
                _lib = Lib(path)
                return _lib
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
        raise ImportError("fastlstm: libfastlstm.so not found; set FASTLSTM_LIB to its path. Tried: %s"
                          % ("; ".join(tried) or "nothing (not installed)"))


if sys.byteorder != "little":  # the model file and the .npy paths assume little-endian floats
    raise ImportError("fastlstm: little-endian platforms only")
