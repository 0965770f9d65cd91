"""Model files: an .npz of plain arrays (no pickles), written atomically, read with full validation.

A file holds the parameters, layer sizes, input scaling, class names and training settings; a
checkpoint adds the optimiser state, the data-order generator's state and the epoch reached, so
that `--resume` continues exactly. Reading never trusts the file: every array is checked for
presence, dtype, shape and finiteness, and any failure is one InputError naming the file.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import InputError
from .model import MLP
from .training import History, TrainState

FORMAT = "fastnet-model"
VERSION = 1


def _text(value):
    """A JSON document stored as a 0-d unicode array (loadable without pickle)."""
    return np.array(json.dumps(value))


def save(path, state, settings, class_names):
    """Write model, optimiser and progress of `state` to path atomically.

    The bytes go to a temporary file in the destination's own directory (a rename across file
    systems would fail), are flushed and fsynced, then renamed over path: a reader, or a crash at
    any moment, sees either the old complete file or the new complete one.
    """
    model, opt = state.model, state.optimizer
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "sizes": np.array(model.sizes, np.int64),
        "params": model.params,
        "input_scale": np.array(model.input_scale),
        "input_shift": np.array(model.input_shift),
        "class_names": np.array(list(class_names), dtype=str),
        "settings": _text(settings),
        "progress": _text({
            "epoch": state.epoch, "batch": state.batch, "optimizer": opt.name,
            "rng": state.rng.bit_generator.state, "epoch_rng": state.epoch_rng,
            "partial_losses": state.partial_losses, "history": vars(state.history),
        }),
    }
    arrays.update({f"opt_{k}": v for k, v in opt.state().items()})
    if not all(np.isfinite(a).all() for a in (model.params, *opt.state().values())):
        raise InputError(f"refusing to write {path}: the model has non-finite values")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
    except OSError:
        pass


def _read_arrays(path):
    """All arrays of an .npz, refusing pickles; a file that is not a readable .npz is an InputError."""
    if not os.path.isfile(path):
        raise InputError(f"model file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{path} holds pickled objects; fastnet never loads those") from None
        raise InputError(f"{path} is not a valid fastnet model file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{path} is not a readable .npz model file ({type(exc).__name__})") from None


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
    try:
        return json.loads(str(_field(arrays, path, key, "U", ())))
    except json.JSONDecodeError:
        raise InputError(f"{path}: '{key}' is not valid JSON") from None


def load(path):
    """Read and validate a model file: returns (model, settings, class_names, arrays)."""
    arrays = _read_arrays(path)
    if str(_field(arrays, path, "format", "U", ())) != FORMAT:
        raise InputError(f"{path} is not a fastnet model file")
    version = int(_field(arrays, path, "version", "iu", ()))
    if version != VERSION:
        raise InputError(f"{path} has model format version {version}; this fastnet reads version {VERSION}")
    sizes = tuple(int(s) for s in _field(arrays, path, "sizes", "iu"))
    if len(sizes) < 2 or min(sizes) <= 0:
        raise InputError(f"{path}: impossible layer sizes {sizes}")
    params = _field(arrays, path, "params", "f")
    if params.dtype not in (np.float32, np.float64):
        raise InputError(f"{path}: parameters have dtype {params.dtype}, expected float32 or float64")
    model = MLP(sizes, params.dtype,
                float(_field(arrays, path, "input_scale", "f", ())),
                float(_field(arrays, path, "input_shift", "f", ())))
    if params.shape != model.params.shape:
        raise InputError(f"{path}: {params.size} parameters do not fit layers {sizes} "
                         f"({model.params.size} expected)")
    if not (np.isfinite(params).all() and np.isfinite([model.input_scale, model.input_shift]).all()):
        raise InputError(f"{path}: the model holds non-finite values")
    model.params[...] = params
    names = [str(n) for n in _field(arrays, path, "class_names", "U", (sizes[-1],))]
    return model, _json(arrays, path, "settings"), names, arrays


def load_state(path, optimizers):
    """Read a checkpoint into a TrainState to resume from: returns (state, settings, class_names)."""
    model, settings, names, arrays = load(path)
    progress = _json(arrays, path, "progress")
    try:
        opt = optimizers[progress["optimizer"]](model.params.size, model.dtype)
        opt.load_state({k[4:]: _field(arrays, path, k, "fiu",
                                      () if k == "opt_step" else model.params.shape)
                        for k in arrays if k.startswith("opt_")})
        rng = np.random.default_rng()
        rng.bit_generator.state = progress["rng"]
        state = TrainState(model, opt, rng, int(progress["epoch"]), History(**progress["history"]),
                           int(progress["batch"]), progress["epoch_rng"],
                           [float(x) for x in progress["partial_losses"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} cannot be resumed: its training state is incomplete ({exc})") from None
    if not all(np.isfinite(a).all() for a in opt.state().values()):
        raise InputError(f"{path}: the optimiser state holds non-finite values")
    return state, settings, names
