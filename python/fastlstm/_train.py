"""Planning (include/fastlstm/plan.h) and training (include/fastlstm/train.h) from NumPy arrays."""
import math
import os

import numpy as np

from . import _lib
from ._lib import BY_NAME
from ._model import METHODS, Model, _spec, features, init, int32s

_byref = _lib.ctypes.byref
METRICS = ("deviation", "accuracy", "perplexity")
PRECISIONS = ("f32", "bf16", "int8")  # fl_precision
FINETUNE_LR = 1e-4  # FL_PLAN_FINETUNE_LR (plan.h): the planner's fine-tuning rate, a tenth of training's


class _Dataset:
    """An fl_dataset built from arrays (copied by the library), freed with the object."""

    def __init__(self, L, handle):
        self._L, self.handle = L, handle

    def __del__(self):
        if self.handle:
            self._L.f.fl_dataset_free(self.handle)
            self.handle = None


def _lengths(lengths, n, seq):
    """(n) int32 lengths in [1, seq], checked here so that the error names the argument."""
    lengths = int32s(lengths, "lengths", 1)
    if lengths.shape[0] != n:
        raise BY_NAME["ShapeError"]("lengths: %d entries for %d sequences" % (lengths.shape[0], n))
    bad = np.nonzero((lengths < 1) | (lengths > seq))[0]
    if bad.size:
        raise BY_NAME["DataError"]("lengths[%d] = %d outside [1, %d]" % (bad[0], lengths[bad[0]], seq))
    return lengths


def _classify_set(L, x, labels, classes, vocab, lengths=None):
    """fl_dataset_classify from x (N, T, D) float32 or (N, T) ids and labels (N); lengths (N): each
    sequence's valid steps (first in its row), or None."""
    if vocab:
        ids, feats, dim = int32s(x, "x", 2, 0, vocab), None, 0
    else:
        x = np.asarray(x)
        if x.ndim != 3:
            raise BY_NAME["ShapeError"]("x: shape %s, expected (N, T, D) features or (N, T) token ids" % (x.shape,))
        ids, feats, dim = None, features(x, "x", 3, x.shape[2]), x.shape[2]
    arr = ids if ids is not None else feats
    labels = int32s(labels, "labels", 1)
    if labels.shape[0] != arr.shape[0]:
        raise BY_NAME["ShapeError"]("labels: %d entries for %d sequences" % (labels.shape[0], arr.shape[0]))
    if classes is None:
        classes = int(labels.max()) + 1
    out = _lib.c_void_p()
    L.check(L.f.fl_dataset_classify(arr.shape[0], arr.shape[1], dim, None if feats is None else feats.ctypes.data,
                                    None if ids is None else ids.ctypes.data, labels.ctypes.data, int(classes),
                                    _byref(out)))
    d = _Dataset(L, out.value)
    if lengths is not None:
        lengths = _lengths(lengths, arr.shape[0], arr.shape[1])
        if L.f.fl_dataset_set_lengths is None:
            raise BY_NAME["UnsupportedError"]("lengths: %s has no fl_dataset_set_lengths (an older library)" % L.path)
        L.check(L.f.fl_dataset_set_lengths(d.handle, lengths.ctypes.data))
    return d


def _lm_set(L, tokens, vocab):
    t = int32s(np.asarray(tokens).reshape(-1), "tokens", 1, 0, vocab)
    out = _lib.c_void_p()
    L.check(L.f.fl_dataset_lm(t.ctypes.data, t.shape[0], int(vocab), _byref(out)))
    return _Dataset(L, out.value)


def _dataset_for(model, x, labels, lengths=None):
    L = model._L
    a = model.arch
    if a.head == "per_step" and a.vocab and labels is None:
        if lengths is not None:
            raise BY_NAME["ArgError"]("lengths go with a classifier's sequences, not a language model's stream")
        return _lm_set(L, x, a.vocab)
    if labels is None:
        raise BY_NAME["ArgError"]("labels are needed for a classifier (a last-step head)")
    return _classify_set(L, x, labels, a.head_out, a.vocab, lengths)


def _precision_bits(precisions):
    """fl_plan_opts.precisions from names ('f32', 'bf16', 'int8') or a bit mask."""
    if isinstance(precisions, int):
        return precisions
    if isinstance(precisions, str):
        precisions = precisions.split(",")
    bits = 0
    for p in precisions:
        if p not in PRECISIONS:
            raise BY_NAME["ArgError"]("precision %r: expected one of %s" % (p, ", ".join(PRECISIONS)))
        bits |= 1 << PRECISIONS.index(p)
    return bits


def _train_opts(L, **kw):
    o = L.default("fl_train_opts")
    for k, v in kw.items():
        if v is None:
            continue
        if k == "optim":
            if v not in ("sgd", "adam"):
                raise BY_NAME["ArgError"]("optim %r: expected 'sgd' or 'adam'" % (v,))
            v = ("sgd", "adam").index(v)
        if not hasattr(o, k) or k.startswith("_"):
            raise TypeError("unknown training option %r" % (k,))
        setattr(o, k, v)
    return o


def _fit(model, train, valid, epochs, max_steps, callback, checkpoint, opts):
    """Run fl_trainer_run on model (in place) with data sets train / valid."""
    L = model._L
    t = _lib.c_void_p()
    L.check(L.f.fl_trainer_create(model.handle, _byref(opts), _byref(t)))
    failure = []

    def cb(progress, user):
        if callback is None:
            return 0
        p = _lib.ctypes.cast(progress, _lib.ctypes.POINTER(L.S.fl_train_progress)).contents
        d = {k: getattr(p, k) for k, _ in _lib.FIELDS["fl_train_progress"]}
        d["epoch_end"] = bool(d["epoch_end"])
        try:
            return 1 if callback(d) is False else 0
        except BaseException as e:  # stop training and re-raise after the C call returns
            failure.append(e)
            return 1

    cfn = _lib.train_callback_fn(cb)
    run = L.S.fl_train_run(train=train.handle, valid=valid.handle if valid is not None else None,
                           epochs=int(epochs), max_steps=int(max_steps or 0),
                           checkpoint=None if checkpoint is None else os.fsencode(checkpoint), every=0,
                           callback=cfn)
    try:
        st = L.f.fl_trainer_run(t.value, _byref(run))
        if failure:
            raise failure[0]
        L.check(st)
    finally:
        L.f.fl_trainer_free(t.value)
    return model


def train(x, labels=None, *, vocab=0, hidden=128, layers=1, embed=128, classes=None, valid=None, epochs=10,
          max_steps=0, decompose=None, seed=1, init_seed=None, callback=None, checkpoint=None, **options):
    """Train a new model from arrays (fl_trainer_run), as `fastlstm train`.

    Classifier (labels given): x (N, T, D) float32 features, or (N, T) token ids with vocab > 0
    (an embedding of size `embed` is learnt); labels (N) class ids (classes: default max + 1).
    Language model (labels None, vocab > 0): x is a token stream (any shape, read in order).
    valid: optional (x, labels) or token stream, evaluated at each epoch end. decompose: optional
    ('svd', rank) or 'svd:16' for every LSTM matrix, trained in factored form. options: fields of
    fl_train_opts (optim='adam'|'sgd', lr, momentum, clip, dropout, batch, bptt, weight_decay,
    lr_decay, patience, shuffle). callback(progress_dict) after every step; returning False stops.
    Returns the trained Model."""
    L = _lib.get()
    opts = _train_opts(L, seed=seed, **options)
    if labels is not None:
        if vocab:
            input_size = embed
        else:
            input_size = np.asarray(x).shape[-1]
        labels = int32s(labels, "labels", 1)
        classes = int(labels.max()) + 1 if classes is None else int(classes)
        head, head_out = "last_step", classes
    else:
        if not vocab:
            raise BY_NAME["ArgError"]("train: labels (classifier) or vocab > 0 (language model) are needed")
        input_size, head, head_out = embed, "per_step", vocab
    model = init(input_size, hidden, layers, vocab=vocab, head=head, head_out=head_out,
                 seed=seed if init_seed is None else init_seed)
    if decompose is not None:
        method, rank = _spec(decompose)
        spec = [(METHODS[method], rank)] * (2 * layers) + ([("dense", 0)] if head != "none" else [])
        dense, model = model, init(input_size, hidden, layers, vocab=vocab, head=head, head_out=head_out,
                                   specs=spec, seed=seed if init_seed is None else init_seed)
        dense.close()
    tr = _dataset_for(model, x, labels)
    va = None
    if valid is not None:
        va = _dataset_for(model, *valid) if labels is not None else _dataset_for(model, valid, None)
    return _fit(model, tr, va, epochs, max_steps, callback, checkpoint, opts)


def finetune(model, x, labels=None, *, valid=None, epochs=3, max_steps=0, freeze_dense=False, callback=None,
             checkpoint=None, **options):
    """Fine-tune a copy of model on arrays (as `fastlstm finetune`): gradients flow into the
    factors of decomposed matrices (and, unless freeze_dense, every other parameter). Data as in
    train(). Returns the new Model; `model` is unchanged."""
    opts = _train_opts(model._L, freeze_dense=int(bool(freeze_dense)), **options)
    m = model.clone()
    tr = _dataset_for(m, x, labels)
    va = None
    if valid is not None:
        va = _dataset_for(m, *valid) if labels is not None else _dataset_for(m, valid, None)
    try:
        return _fit(m, tr, va, epochs, max_steps, callback, checkpoint, opts)
    except BaseException:
        m.close()
        raise


def evaluate(model, x, labels=None, batch=32, bptt=35, lengths=None):
    """Mean cross-entropy, accuracy, perplexity and count of model on arrays (fl_model_evaluate),
    as `fastlstm eval`. Data as in train(); lengths: (N) valid steps of each classifier sequence
    (first in its row), the padding masked as `eval --lengths` masks it."""
    d = _dataset_for(model, x, labels, lengths)
    r = model._L.S.fl_eval_result()
    model._L.check(model._L.f.fl_model_evaluate(model.handle, d.handle, int(batch), int(bptt), _byref(r)))
    return {"loss": r.loss, "accuracy": r.accuracy, "perplexity": r.perplexity, "count": r.count}


# ---------------------------------------------------------------- planner


class Plan:
    """The result of fastlstm.plan(): `model` (the chosen configuration, a Model of its own),
    `chosen` (index into points), `points` (every configuration evaluated: specs, predicted and
    measured seconds per step, params, metric, loss, meets_budget, pareto, certified and the
    certification figures), `reasons` (why each matrix got its method and rank), `metric`
    ('deviation', 'accuracy', 'perplexity'), `budget` and `certificate` (fl_plan_certificate as a
    dict: available, certified, confidence, count, dense_metric, ...)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        p = self.points[self.chosen]
        return "<fastlstm.Plan %s, predicted %.3g s/step, %s %.4g (budget %.4g)>" % (
            ", ".join(p["specs"]), p["predicted_seconds"], self.metric, p["loss"], self.budget)


def profile(path=None, measure=True):
    """A machine profile for the planner (an opaque buffer), found as `fastlstm plan` finds it.

    path given: that profile file, which must describe this machine type (UnsupportedError
    otherwise, with the library's message). path None: the CLI's saved profile
    (~/.cache/fastlstm/profile.json) when it exists and describes this machine; otherwise, with
    measure, the machine is measured (a few seconds) and the profile saved there as the CLI does;
    without measure, the detected topology with conservative default rates (nothing saved)."""
    L = _lib.get()
    buf = _lib.ctypes.create_string_buffer(_lib.PROFILE_BYTES)
    here = _lib.ctypes.create_string_buffer(_lib.PROFILE_BYTES)
    check = L.f.fl_profile_check_machine
    if check is not None:
        L.check(L.f.fl_machine_id_detect(here))
    if path is not None:
        L.check(L.f.fl_profile_load(os.fsencode(path), buf))
        if check is not None:
            L.check(check(buf, here), os.fspath(path))
        return buf
    p = _lib.ctypes.create_string_buffer(4096)
    default = p.value if L.f.fl_profile_default_path(p, 4096) == 0 else None
    if default and os.path.exists(default) and L.f.fl_profile_load(default, buf) == 0 \
            and (check is None or check(buf, here) == 0):
        return buf
    buf = _lib.ctypes.create_string_buffer(_lib.PROFILE_BYTES)
    L.check(L.f.fl_profile_detect(buf))
    if measure:
        L.check(L.f.fl_profile_measure(buf))
        if default:
            L.f.fl_profile_save(buf, default)  # best effort, as the CLI: a cache, not a result
    return buf


def plan(model, data=None, labels=None, max_loss=None, *, lengths=None, max_dev=None, batch=1, seq=35, threads=1,
         max_threads=0, certify=None, certify_fraction=None, confidence=None, finetune=None, finetune_epochs=None,
         train_options=None, profile_path=None, measure=True, allow_cp=True, max_evals=None, verify=None, seed=1,
         progress=None, precisions=None):
    """Search the fastest storage (dense, SVD, CP and ranks per matrix) of model within an
    accuracy budget (fl_plan_create), as `fastlstm plan`.

    data: validation inputs (n, T, D) float32 or (n, T) token ids; labels: (n) class ids of a
    classifier (None: judged against the dense model's predictions or, for other models, by the
    output deviation). max_loss: accuracy points lost (classifier), relative perplexity increase
    (language model), or output deviation; None: the library's default. Without data the deviation
    on random inputs is bounded by max_dev. lengths: (n) valid length of each sequence of data, in
    [1, T], the valid steps first in each row (pack_padded_sequence's layout): the sequences are
    then judged as `fastlstm eval` judges them (a last-step head reads each one's last valid step). batch, seq, threads: the serving shape planned for
    (threads 0: plan the thread count too, up to max_threads; the chosen model records it).
    Certification (plan.h): the budget is certified on held-back data, `certify` ((x, labels) or
    (x, labels, lengths), or a token stream for a language model) or else the last certify_fraction
    (default 0.5; 0: none) of the data (each sequence keeping its length), at one-sided level
    `confidence` (default 0.9). finetune: training data ((x, labels), (x, labels, lengths) or a
    token stream) to judge candidates after a short fine-tune and fine-tune the chosen one for
    finetune_epochs with train_options (fields of fl_train_opts, as train(); lr default 1e-4, the
    planner's fine-tuning rate, not training's 1e-3). precisions: the weight precisions the search
    may store a matrix in besides the input's, as names ('f32', 'bf16', 'int8', a list or a
    comma-separated string) or fl_plan_opts' bit mask; None: every matrix keeps its precision.
    profile_path / measure: see profile(). verify: how many best candidates are timed for real
    (0: none, the prediction decides). progress(message) receives progress lines.
    Returns a Plan."""
    L = model._L
    a = model.arch
    prof = profile(profile_path, measure)
    o = L.default("fl_plan_opts")
    o.batch, o.seq, o.threads, o.allow_cp, o.seed = int(batch), int(seq), int(threads), int(bool(allow_cp)), int(seed)
    o.max_threads = int(max_threads)
    o.max_loss = math.nan if max_loss is None else float(max_loss)
    if max_dev is not None:
        o.max_dev = float(max_dev)
    if max_evals is not None:
        o.max_evals = int(max_evals)
    if verify is not None:
        o.verify = int(verify)
    if precisions is not None:
        o.precisions = _precision_bits(precisions)
    keep = []
    if certify is not None:
        cd = _dataset_for(model, *certify) if isinstance(certify, tuple) else _dataset_for(model, certify, None)
        o.certify = cd.handle
        keep.append(cd)
    if certify_fraction is not None:
        o.certify_fraction = float(certify_fraction)
    if confidence is not None:
        o.confidence = float(confidence)
    if finetune is not None:
        fd = _dataset_for(model, *finetune) if isinstance(finetune, tuple) else _dataset_for(model, finetune, None)
        o.finetune = fd.handle
        keep.append(fd)
        if finetune_epochs is not None:
            o.finetune_epochs = int(finetune_epochs)
        if train_options:
            to = _train_opts(L, **dict({"lr": FINETUNE_LR}, **train_options))
            o.train = _lib.ctypes.cast(_byref(to), _lib.c_void_p)
            keep.append(to)
    if lengths is not None and data is None:
        raise BY_NAME["ArgError"]("lengths go with data")
    if data is not None:
        pd = L.S.fl_plan_data()
        if a.vocab:
            d = int32s(data, "data", 2)
            pd.tokens = d.ctypes.data
        else:
            d = features(data, "data", 3, a.input)
            pd.x, pd.dim = d.ctypes.data, a.input
        pd.n, pd.seq = d.shape[0], d.shape[1]
        keep.append(d)
        if labels is not None:
            lab = int32s(labels, "labels", 1)
            pd.labels, pd.n_labels = lab.ctypes.data, lab.shape[0]
            keep.append(lab)
        if lengths is not None:
            ln = _lengths(lengths, d.shape[0], d.shape[1])
            pd.lengths = ln.ctypes.data
            keep.append(ln)
        keep.append(pd)
        o.data = _lib.ctypes.cast(_byref(pd), _lib.c_void_p)
    if progress is not None:
        cfn = _lib.plan_progress_fn(lambda ctx, msg: progress(msg.decode("utf-8", "replace")))
        o.progress = cfn
        keep.append(cfn)
    out = _lib.c_void_p()
    L.check(L.f.fl_plan_create(model.handle, prof, _byref(o), _byref(out)))
    try:
        nmat = L.f.fl_model_num_matrices(model.handle)
        points = []
        for i in range(L.f.fl_plan_num_points(out.value)):
            p = L.f.fl_plan_point_at(out.value, i).contents
            specs = ["dense" if p.specs[j].method == 0 else "%s:%d" % (METHODS[p.specs[j].method], p.specs[j].rank)
                     for j in range(nmat)]
            points.append({"specs": specs, "params": p.cost.params, "predicted_seconds": p.cost.seconds,
                           "measured_seconds": p.measured_seconds if p.measured_seconds >= 0 else None,
                           "metric": p.metric, "loss": p.loss, "meets_budget": bool(p.meets_budget),
                           "pareto": bool(p.pareto), "certified": None if p.certified < 0 else bool(p.certified),
                           "cert_metric": p.cert_metric, "cert_loss": p.cert_loss, "cert_se": p.cert_se,
                           "cert_bound": p.cert_bound,
                           "precisions": [PRECISIONS[p.precisions[j]] if p.precisions else "f32" for j in range(nmat)]})
        reasons = [L.f.fl_plan_reason(out.value, j).decode("utf-8", "replace") for j in range(nmat)]
        chosen = L.f.fl_plan_chosen(out.value)
        cm = _lib.c_void_p()
        L.check(L.f.fl_model_clone(L.f.fl_plan_model(out.value), _byref(cm)))
        c = L.f.fl_plan_certificate_of(out.value).contents
        cert = {k: getattr(c, k) for k, _ in _lib.FIELDS["fl_plan_certificate"]}
        for k in ("available", "certified", "finetuned"):
            cert[k] = bool(cert[k])
        return Plan(model=Model(cm.value), chosen=chosen, points=points, reasons=reasons,
                    metric=METRICS[L.f.fl_plan_metric_kind(out.value)], budget=L.f.fl_plan_budget(out.value),
                    certificate=cert)
    finally:
        L.f.fl_plan_free(out.value)
