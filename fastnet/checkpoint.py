"""Model files: an .npz of plain arrays (no pickles), written atomically, read with full validation.

A file holds the parameters, layer sizes and activations, input scaling, class names, the training
recipe (fastnet.recipe.Recipe) and what it was trained on and how (`trained`: the data set, its
folder, its inputs' dtype, the test set's fingerprint, the backend and threads that make a resumed
run exact); a file from before activations were recorded has relu hidden layers, and one from
before the recipe had a type holds both records in one `settings` member (records); a
checkpoint adds the optimiser state, the data-order generator's state and the epoch reached, so
that `--resume` continues exactly. A model trained in Python also holds `classes`, the K labels it
was trained on (numbers or text); without it (the command line's files) the classes are 0..K-1.
Reading never trusts the file: every array is checked for presence, dtype, shape and finiteness,
and any failure is one InputError naming the file.
"""

import json
import math
import os
import zipfile
import zlib

import numpy as np

from kernels import ACTIVATIONS, activation_codes, activation_names, parameter_count

from .errors import InputError
from .files import NPY_HEADER, atomic_write, npy_header, signals_held
from .model import MAX_LAYERS, MLP, hidden_layers
from .training import MAX_STEP_LOSSES, History, TrainState

FORMAT = "fastnet-model"
VERSION = 1
CLASS_KINDS = "biufU"  # dtypes of an optional `classes` member: booleans, numbers, text (never objects)


def _text(value):
    """A JSON document stored as a 0-d unicode array (loadable without pickle)."""
    return np.array(json.dumps(value))


# What `trained` holds; files of before held these keys in their `settings` beside the recipe's.
TRAINED = ("dataset", "data_dir", "input_dtype", "test_fingerprint", "backend", "threads")


def save(path, state, recipe, trained, class_names, classes=None):
    """Write model, optimiser and progress of `state` to path atomically (fastnet.files.atomic_write):
    a reader, or a crash at any moment, sees the old complete file or the new complete one.
    recipe: a fastnet.recipe.Recipe; trained: the TRAINED record (its known keys are kept).
    classes, when given, is a (K,) array of numbers or text: the labels that outputs 0..K-1 stand for."""
    model, opt = state.model, state.optimizer
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "sizes": np.array(model.sizes, np.int64),
        "activations": np.array(model.activations, dtype=str),
        "params": model.params,
        "input_scale": model.input_scale,
        "input_shift": model.input_shift,
        "class_names": np.array(list(class_names), dtype=str),
        "recipe": _text(recipe.as_stored()),
        "trained": _text({k: trained[k] for k in TRAINED if k in trained}),
        "progress": _text({
            "epoch": state.epoch, "batch": state.batch, "optimizer": opt.name,
            "rng": state.rng.bit_generator.state, "epoch_rng": state.epoch_rng,
            "steps": state.history.steps, "step_stride": state.history.step_stride,
        }),
        "partial_losses": np.array(state.partial_losses, np.float64),
        "partial_correct": np.array(state.partial_correct, np.int64),
    }
    arrays.update({f"history_{k}": np.array(getattr(state.history, k), np.float64) for k in HISTORY_RANGES})
    arrays.update({f"opt_{k}": v for k, v in opt.state().items()})
    if classes is not None:
        if classes.dtype.kind not in CLASS_KINDS or classes.shape != (model.num_classes,):
            raise InputError(f"refusing to write {path}: classes must be {model.num_classes} numbers or strings")
        arrays["classes"] = classes
    for key in ("class_names", "classes"):
        if key in arrays and arrays[key].dtype.itemsize > _text_bytes(1):
            raise InputError(f"refusing to write {path}: a class name is longer than {MAX_NAME} characters")
    if not all(np.isfinite(a).all() for a in (model.params, *opt.state().values())):
        raise InputError(f"refusing to write {path}: the model has non-finite values")
    with atomic_write(path, "wb", "model file") as f:
        with signals_held():  # zipfile cut by a signal raises ValueError instead: the Ctrl-C comes after it
            np.savez(f, **arrays)


# What a damaged zip can raise from zipfile, zlib or numpy's reader, besides ValueError.
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, NotImplementedError,
                RuntimeError, MemoryError)


# The members a model file may have, each read within a byte limit derived from what save() writes:
# first the ones of a fixed bound; then those sized by the stored layer sizes (the parameters and the
# input scaling by sizes, the class names by the classes); then those sized by the progress (the
# history: one float per epoch, MAX_STEP_LOSSES step losses, one partial loss per step of the epoch
# reached). Any other member is never read, so a file padded with a huge extra member costs nothing.
# `progress` is small in today's files; files from before the history had members of its own held it
# there as JSON, hence its large bound.
MAX_NAME = 1024  # characters of a class name (a label in text) that a model file may hold


def _text_bytes(count, chars=MAX_NAME):
    """Bytes of a NumPy unicode array of count strings of up to chars characters (4 bytes each)."""
    return count * 4 * chars


SMALL_MEMBERS = {"format": 1 << 10, "version": 1 << 10, "sizes": 8 * MAX_LAYERS + NPY_HEADER,
                 "activations": _text_bytes(MAX_LAYERS, max(map(len, ACTIVATIONS))) + NPY_HEADER,
                 "settings": 1 << 24, "recipe": 1 << 24, "trained": 1 << 24, "progress": 1 << 28, "opt_step": 1 << 10}
LARGE_MEMBERS = ("params", "opt_m", "opt_v")
EPOCH_MEMBERS = tuple(f"history_{k}" for k in ("epoch_seconds", "eval_seconds", "train_loss", "train_accuracy",
                                                "val_loss", "val_accuracy"))


def _sized_limits(arrays):
    """{member: byte limit} of the members whose size follows the stored layer sizes and progress;
    a member whose bound cannot be found (damaged sizes or progress) is not read (load() reports why)."""
    sizes = _valid_sizes(arrays.get("sizes"))
    limits = {}
    if sizes is not None:
        count = parameter_count(sizes)
        limits.update({key: count * 8 + NPY_HEADER for key in LARGE_MEMBERS})
        # (with the fixed limits of before, which files written then may fill)
        limits.update({key: max(sizes[0] * 8 + NPY_HEADER, 1 << 26) for key in ("input_scale", "input_shift")})
        limits.update({key: max(_text_bytes(sizes[-1]) + NPY_HEADER, 1 << 24) for key in ("class_names", "classes")})
    counts = _progress_counts(arrays)
    if counts is not None:
        epoch, batch = counts
        limits.update({key: epoch * 8 + NPY_HEADER for key in EPOCH_MEMBERS})
        limits.update({"history_step_loss": MAX_STEP_LOSSES * 8 + NPY_HEADER,
                       "partial_losses": batch * 8 + NPY_HEADER, "partial_correct": batch * 8 + NPY_HEADER})
    return limits


def _progress_counts(arrays):
    """(epoch, batch) of a stored progress, when it parses and holds whole counts; else None."""
    try:
        progress = json.loads(str(arrays["progress"]))
        epoch, batch = progress["epoch"], progress["batch"]
    except (KeyError, TypeError, ValueError, RecursionError):
        return None
    return (epoch, batch) if _is_count(epoch) and _is_count(batch) else None


def _read_arrays(path):
    """The known members of a model .npz, each read within a byte limit, refusing pickles; a file that
    is not a readable .npz model is an InputError."""
    if not os.path.exists(path):
        raise InputError(f"model file {path} does not exist")
    if not os.path.isfile(path):
        raise InputError(f"model file {path} is not a file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise InputError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    # anything else would be a .npy array or a pickle to np.load
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise InputError(f"{path} is {'empty' if not magic else 'not an .npz (zip) file'}; "
                         "not a fastnet model file")
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {key: _read_member(zf, path, key, limit) for key, limit in SMALL_MEMBERS.items()
                      if f"{key}.npy" in zf.NameToInfo}
            arrays.update({key: _read_member(zf, path, key, limit) for key, limit in _sized_limits(arrays).items()
                           if f"{key}.npy" in zf.NameToInfo})
            for info in zf.infolist():  # the others: only their headers, to refuse pickles outright
                if info.filename.endswith(".npy") and info.filename[:-4] not in arrays:
                    npy_header(zf, info, path, info.filename[:-4])
    except _READ_ERRORS as exc:
        raise InputError(f"{path} is not a readable .npz model file ({type(exc).__name__})") from None
    return arrays


def _read_member(zf, path, key, limit):
    """Member key.npy of the open zip as an array: its declared size, then its .npy header's shape and
    dtype are checked against limit before any data is read."""
    info = zf.getinfo(f"{key}.npy")
    if info.file_size > limit:
        raise InputError(f"{path}: '{key}' holds {info.file_size:,} bytes, more than a model file of these "
                         f"layers needs ({limit:,}); not read")
    shape, dtype = npy_header(zf, info, path, key)
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise InputError(f"{path}: '{key}' claims a shape {shape} larger than its data")
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: '{key}' is not a valid NumPy array ({exc})") from None


def _valid_sizes(sizes):
    """Stored layer sizes as a tuple of ints, or None when they are not a valid list (load() then reports them)."""
    if sizes is None or sizes.dtype.kind not in "iu" or sizes.ndim != 1 or len(sizes) < 2 or sizes.min() <= 0:
        return None
    return tuple(int(s) for s in sizes)


def _field(arrays, path, key, kind=None, shape=None):
    """arrays[key], checked for presence, dtype kind ('f', 'i', 'U') and shape."""
    if key not in arrays:
        raise InputError(f"{path} is missing '{key}'; not a fastnet model file?")
    a = arrays[key]
    if kind is not None and a.dtype.kind not in kind:
        raise InputError(f"{path}: '{key}' has dtype {a.dtype}, expected kind {kind!r}")
    if shape is not None and a.shape != shape:
        raise InputError(f"{path}: '{key}' has shape {a.shape}, expected {shape}")
    return a


def _json(arrays, path, key):
    """The JSON object (a dict) stored under key."""
    try:
        value = json.loads(str(_field(arrays, path, key, "U", ())))
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, or an integer of too many digits
        why = "" if isinstance(exc, json.JSONDecodeError) else f" ({str(exc).splitlines()[0][:100]})"
        raise InputError(f"{path}: '{key}' is not valid JSON{why}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: '{key}' is not a JSON object")
    return value


def _activations(arrays, path, sizes):
    """The layers' activation names (one per layer, the last identity); relu hidden layers for a file
    written before they were recorded."""
    if "activations" not in arrays:
        return hidden_layers(sizes)
    names = [str(a) for a in _field(arrays, path, "activations", "U", (len(sizes) - 1,))]
    try:
        activation_names(sizes, activation_codes(names))
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    return names


def load(path):
    """Read and validate a model file: returns (model, record, class_names, arrays); record is
    {"recipe": the stored recipe's fields, "trained": the TRAINED record} as stored (records)."""
    arrays = _read_arrays(path)
    if str(_field(arrays, path, "format", "U", ())) != FORMAT:
        raise InputError(f"{path} is not a fastnet model file")
    version = int(_field(arrays, path, "version", "iu", ()))
    if version != VERSION:
        raise InputError(f"{path} has model format version {version}; this fastnet reads version {VERSION}")
    sizes = _field(arrays, path, "sizes", "iu")
    if sizes.ndim != 1 or len(sizes) < 2 or sizes.min() <= 0:
        raise InputError(f"{path}: impossible layer sizes {sizes.tolist()}")
    sizes = tuple(int(s) for s in sizes)
    params = _field(arrays, path, "params", "f")
    if params.dtype not in (np.float32, np.float64):
        raise InputError(f"{path}: parameters have dtype {params.dtype}, expected float32 or float64")
    count = parameter_count(sizes)  # before MLP() allocates that many
    if params.shape != (count,):
        raise InputError(f"{path}: parameters of shape {params.shape} do not fit layers "
                         f"{','.join(map(str, sizes))} ({count} expected)")
    model = MLP(sizes, params.dtype,
                _field(arrays, path, "input_scale", "f", sizes[:1]),
                _field(arrays, path, "input_shift", "f", sizes[:1]),
                _activations(arrays, path, sizes))
    if not all(np.isfinite(a).all() for a in (params, model.input_scale, model.input_shift)):
        raise InputError(f"{path}: the model holds non-finite values")
    model.params[...] = params
    names = [str(n) for n in _field(arrays, path, "class_names", "U", (sizes[-1],))]
    return model, records(arrays, path), names, arrays


def records(arrays, path):
    """{"recipe": dict, "trained": dict} of a file: its `recipe` and `trained` members, or, in a file
    written before they were apart, both taken from its `settings` (which held output paths and
    timings too: those are dropped). The recipe is checked where it is used (Recipe.from_stored)."""
    if "recipe" in arrays or "settings" not in arrays:
        return {"recipe": _json(arrays, path, "recipe"), "trained": _json(arrays, path, "trained")}
    settings = _json(arrays, path, "settings")
    return {"recipe": settings, "trained": {k: settings[k] for k in TRAINED if k in settings}}


def classes(arrays, path, count):
    """The optional `classes` member: the (count,) original labels, distinct; None when absent."""
    if "classes" not in arrays:
        return None
    values = _field(arrays, path, "classes", CLASS_KINDS, (count,))
    if len(np.unique(values)) != count:
        raise InputError(f"{path}: 'classes' repeats a label")
    return values


def load_state(path, optimizers):
    """Read a checkpoint into a TrainState to resume from: returns (state, record, class_names)."""
    return load_resumable(path, optimizers)[:3]


def load_resumable(path, optimizers):
    """load_state's (state, record, class_names), and the file's classes (None when it has none)."""
    model, record, names, arrays = load(path)
    state = state_from(model, record["recipe"], arrays, path, optimizers)
    return state, record, names, classes(arrays, path, model.num_classes)


def state_from(model, recipe, arrays, path, optimizers):
    """The TrainState (optimiser, generator, progress) that arrays of a loaded file hold for model;
    recipe: the stored recipe's fields (the optimiser's hyper-parameters)."""
    progress = _json(arrays, path, "progress")
    try:
        _check_counts(progress)  # before the members whose size they give
        progress = _with_history(progress, arrays, path)
        _check_progress(progress)
        kind = optimizers[progress["optimizer"]]
        hyper = {k: recipe[k] for k in kind.HYPER if k in recipe}
        opt = kind(model.params.size, model.dtype, **hyper)
        opt.load_state({k[4:]: _field(arrays, path, k, "fiu",
                                      () if k == "opt_step" else model.params.shape)
                        for k in arrays if k.startswith("opt_")})
        rng = np.random.default_rng()
        rng.bit_generator.state = progress["rng"]
        state = TrainState(model, opt, rng, progress["epoch"], History(**progress["history"]),
                           progress["batch"], progress["epoch_rng"],
                           [float(x) for x in progress["partial_losses"]], _partial_correct(arrays, progress["batch"]))
        if state.batch:  # a mid-epoch checkpoint redraws the epoch's order from epoch_rng
            np.random.default_rng().bit_generator.state = state.epoch_rng
        if opt.step < 0:
            raise ValueError("negative step count")
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise InputError(f"{path} cannot be resumed: its training state is damaged or incomplete ({exc})") from None
    if not all(np.isfinite(a).all() for a in opt.state().values()):
        raise InputError(f"{path}: the optimiser state holds non-finite values")
    return state


def _partial_correct(arrays, batch):
    """The current epoch's counts of rows predicted right (training.TrainState), one per step done;
    [] from a file written before they were kept: that epoch's running accuracy is then NaN."""
    counts = arrays.get("partial_correct")
    if counts is None or counts.shape != (batch,) or counts.dtype.kind not in "iu" or (batch and counts.min() < 0):
        return []
    return [int(c) for c in counts]


def _with_history(progress, arrays, path):
    """progress with its history and partial losses as lists: as the JSON holds them (files from
    before they had members of their own, whose history lacks steps and step_stride), else from
    their float members."""
    progress = dict(progress)
    if "history" in progress:
        history = progress["history"]
        if isinstance(history, dict) and isinstance(history.get("step_loss"), list) and "steps" not in history:
            progress["history"] = {**history, "steps": len(history["step_loss"]), "step_stride": 1}
    else:
        history = {k: _float_list(arrays, path, f"history_{k}") for k in HISTORY_RANGES}
        progress["history"] = {**history, "steps": progress.get("steps"), "step_stride": progress.get("step_stride")}
    if "partial_losses" not in progress:
        progress["partial_losses"] = _float_list(arrays, path, "partial_losses")
    return progress


def _float_list(arrays, path, key):
    """A 1-D float member as a list; ValueError naming it when it is missing or of another form."""
    if key not in arrays:
        raise ValueError(f"no {key}")
    values = arrays[key]
    if values.dtype.kind != "f" or values.ndim != 1:
        raise ValueError(f"{key} is not a list of numbers")
    return values.tolist()


def _is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _numbers(values, what, low=0.0, high=math.inf, nan=False):
    """ValueError unless values is a list of real numbers in [low, high] (NaN too where nan)."""
    if not isinstance(values, list):
        raise ValueError(f"{what} is not a list")
    for x in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(f"{what} holds {x!r}, not a number")
        if not (low <= x <= high or (nan and x != x)) or x in (math.inf, -math.inf):
            raise ValueError(f"{what} holds {x!r}, outside {low:g}..{high:g}")


# A checkpoint's History lists: one entry per finished epoch (step_loss: one per step_stride-th
# step, training.record_steps), with the range of their values; validation metrics are NaN in a run
# without a validation set, the training accuracy where the trainer did not evaluate it (the
# scikit-learn estimator).
HISTORY_RANGES = {"epoch_seconds": (0, math.inf, False), "eval_seconds": (0, math.inf, False),
                  "train_loss": (0, math.inf, False), "train_accuracy": (0, 1, True),
                  "val_loss": (0, math.inf, True), "val_accuracy": (0, 1, True), "step_loss": (0, math.inf, False)}


def _check_counts(progress):
    """(epoch, batch) of a checkpoint's progress; ValueError unless both are there, whole and not negative."""
    missing = [k for k in ("epoch", "batch") if k not in progress]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    epoch, batch = progress["epoch"], progress["batch"]
    if not (_is_count(epoch) and _is_count(batch)):
        raise ValueError(f"epoch {epoch!r} and batch {batch!r} must be whole counts, not negative")
    return epoch, batch


def _check_progress(progress):
    """ValueError unless every field of a checkpoint's progress has its type, range and length:
    epoch and batch counts; `batch` finite partial losses; a history list per History field with
    one number per finished epoch (step_loss: one per step_stride-th of `steps` steps, at least one a
    epoch); generator states as objects."""
    missing = [k for k in ("epoch", "batch", "optimizer", "rng", "epoch_rng", "partial_losses", "history")
               if k not in progress]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    epoch, batch = _check_counts(progress)
    _numbers(progress["partial_losses"], "partial_losses")
    if len(progress["partial_losses"]) != batch:
        raise ValueError(f"{len(progress['partial_losses'])} partial losses for {batch} batches")
    history = progress["history"]
    if not isinstance(history, dict) or set(history) != {*HISTORY_RANGES, "steps", "step_stride"}:
        raise ValueError(f"history must have exactly the fields {', '.join(HISTORY_RANGES)}")
    for key, (low, high, nan) in HISTORY_RANGES.items():
        _numbers(history[key], f"history {key}", low, high, nan)
        if key != "step_loss" and len(history[key]) != epoch:
            raise ValueError(f"history {key} has {len(history[key])} entries for {epoch} epochs")
    steps, stride, kept = history["steps"], history["step_stride"], len(history["step_loss"])
    if not (_is_count(steps) and _is_count(stride) and stride >= 1 and stride & (stride - 1) == 0):
        raise ValueError(f"history steps {steps!r} and step_stride {stride!r} must be a count and a power of two")
    if not (steps >= epoch and kept == -(-steps // stride)):
        raise ValueError(f"history step_loss has {kept} entries for {steps} steps (every {stride}) "
                         f"in {epoch} epochs")
    if not isinstance(progress["rng"], dict) or not (progress["epoch_rng"] is None or isinstance(progress["epoch_rng"], dict)):
        raise ValueError("the generator states are not objects")
    if batch and progress["epoch_rng"] is None:
        raise ValueError("a mid-epoch checkpoint without its epoch's generator state")


def check_position(state, n_train, batch_size, path):
    """InputError unless a resumed state's place inside its epoch exists for this training set and
    batch size: batch <= steps per epoch (a checkpoint is read before the data, so this comes later).
    batch == steps, which earlier versions wrote when a stop came right after an epoch's last step, resumes
    by completing that epoch (training.train_epoch runs no step, then its bookkeeping)."""
    steps = -(-n_train // batch_size)
    if state.batch > steps:
        raise InputError(f"{path} cannot be resumed: it stopped after batch {state.batch} of an epoch, but an "
                         f"epoch of {n_train} training images in batches of {batch_size} has {steps}")
