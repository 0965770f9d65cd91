"""The training recipe: presets, input standardisation, and a fresh model + optimiser state.

Shared by the command line, the benchmarks and the Python API, so that all of them train the
same way from the same settings.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from kernels import ACTIVATIONS, TILE_ROWS, parameter_count

from . import memory
from .errors import InputError
from .model import MAX_LAYERS, MLP, hidden_layers, parse_layers
from .optim import OPTIMIZERS
from .training import TrainState, split_validation

MAX_THREADS = 4096  # more is a typo, and overflows the C int that BLAS libraries take
MAX_PARAMETERS = 500_000_000  # more than any network this CPU trainer can train in a day


class FieldError(Exception):
    """A recipe field that its rule refuses: `field` and the rest of the message, so that each front
    door can name the field its own way (make). Raised as BadValue or BadType."""

    plain = Exception

    def __init__(self, field, rest):
        super().__init__(f"{field} {rest}")
        self.field, self.rest = field, rest

    def named(self, name):
        """The same complaint as a plain ValueError or TypeError, the field named by name(field)."""
        return self.plain(f"{name(self.field)} {self.rest}")


class BadValue(FieldError, ValueError):
    plain = ValueError


class BadType(FieldError, TypeError):
    plain = TypeError


def _real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Rule:
    """What a recipe field may hold: `accepts(value)` on the value as coerced by `coerce`, and how a
    message says it (the words after "must be"). `parse` reads it from a command-line flag's text."""

    text: str
    accepts: object
    coerce: object = None
    parse: object = str
    choices: tuple = None


def integer(least):
    """The rule of an integer field of at least `least` (numpy integers become ints)."""
    return Rule(f"an integer >= {least}", lambda v: _int(v) and v >= least, lambda v: int(v) if _int(v) else v, int)


def real(text, accepts):
    """The rule of a real field: a float (ints and numpy numbers become floats) that `accepts`."""
    return Rule(text, lambda v: isinstance(v, float) and accepts(v), lambda v: float(v) if _real(v) else v, float)


def choice(options):
    """The rule of a field that holds one of `options` (text)."""
    return Rule(f"one of {', '.join(options)}", lambda v: isinstance(v, str) and v in options, None, str,
                tuple(options))


def _layers(value):
    """layers as a tuple of ints when it is a sequence of integers; else as it is (refused)."""
    try:
        return tuple(int(v) for v in value) if all(_int(v) for v in value) else value
    except TypeError:
        return value


def _layers_fit(sizes):
    return (isinstance(sizes, tuple) and 2 <= len(sizes) <= MAX_LAYERS and min(sizes) > 0
            and parameter_count(sizes) <= MAX_PARAMETERS)


def _split(value):
    if _int(value):
        return int(value)
    return float(value) if _real(value) else value


LAYERS = Rule(f"at least two positive layer sizes (inputs first, classes last; at most {MAX_LAYERS} sizes and "
              f"{MAX_PARAMETERS:,} parameters)", _layers_fit, _layers)
# The recipe's fields, each with its rule and its help: the one table that validates a Recipe from
# any front door and that makes python -m fastnet.train's flags (fastnet.train).
FIELDS = {
    "layers": (LAYERS, "layer sizes, input first (default: the data's inputs, 128, the data's classes)"),
    "activation": (choice(ACTIVATIONS), "activation of the hidden layers (default relu)"),
    "alpha": (real("a finite number >= 0", lambda v: 0 <= v < math.inf),
              "L2 penalty of the weights, as scikit-learn's MLPClassifier (default 0)"),
    "epochs": (integer(1), "total epochs (default 5)"),
    "batch_size": (integer(1), "samples per step (default 128)"),
    "optimizer": (choice(OPTIMIZERS), "the update rule (default adam)"),
    "lr": (real("a positive finite number", lambda v: 0 < v < math.inf),
           "base learning rate (preset: 2e-3; seed 5e-4)"),
    "schedule": (choice(("constant", "cosine")), "learning-rate schedule (preset: cosine; seed constant)"),
    "warmup": (integer(0), "steps of linear learning-rate warm-up (default 0)"),
    "beta1": (real("a number in [0, 1)", lambda v: 0 <= v < 1), "Adam's first-moment decay (preset: 0.8; seed 0.9)"),
    "beta2": (real("a number in [0, 1)", lambda v: 0 <= v < 1),
              "Adam's second-moment decay (preset: 0.99; seed 0.999)"),
    "eps": (real("a positive number", lambda v: 0 < v < math.inf), "Adam's epsilon (default 1e-8)"),
    "standardize": (Rule("True or False", lambda v: isinstance(v, bool),
                         lambda v: bool(v) if isinstance(v, np.bool_) else v),
                    "standardise each input with the training rows' mean and deviation (preset: on)"),
    "val_split": (Rule("a fraction in [0, 1) or a count >= 0",
                       lambda v: (_int(v) and v >= 0) or (isinstance(v, float) and 0 <= v < 1), _split),
                  "held out for validation: a fraction below 1 or a number of rows (preset: 0.05; seed 0)"),
    "seed": (integer(0), "seed of initialisation, split and order (default 0)"),
    "dtype": (choice(("float32", "float64")), "precision of the parameters and the arithmetic (default float32)"),
}
TYPE_ERRORS = ("standardize",)  # a value of the wrong kind there is a TypeError (the others: ValueError)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a training run computes, typed and validated (FIELDS) on creation.

    The defaults are the `fastnet` recipe (the measured default, README); Recipe.preset("seed") is
    the blog walkthrough's. Made by the command line from its flags, by fastnet.fit from its
    keywords, by the estimator from its parameters (each naming fields its own way: make), and
    stored in model files (as_stored; from_stored reads any file's). How a run is run (backend,
    threads, output paths) and what it measured are not part of it.
    """

    layers: tuple = (784, 128, 10)
    activation: str = "relu"
    alpha: float = 0.0
    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup: int = 0
    beta1: float = 0.8
    beta2: float = 0.99
    eps: float = 1e-8
    standardize: bool = True
    val_split: float = 0.05  # or an int: a count of rows
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        for name, (rule, _) in FIELDS.items():
            value = getattr(self, name)
            if rule.coerce is not None:
                value = rule.coerce(value)
                object.__setattr__(self, name, value)
            if not rule.accepts(value):
                raise (BadType if name in TYPE_ERRORS else BadValue)(name, f"must be {rule.text}, got {value!r}")
        tiny = float(np.finfo(self.dtype).tiny)
        if self.eps < tiny:  # below the smallest normal it rounds to 0 or loses precision; Adam would divide by 0
            raise BadValue("eps", f"{self.eps:g} is below the smallest normal {self.dtype} ({tiny:.3g})")

    @classmethod
    def preset(cls, name, **changes):
        """The recipe `name` (PRESETS: "fastnet", the defaults, or "seed", the blog's) with changes."""
        return cls(**{**PRESETS[name], **changes})

    def replace(self, **changes):
        """A copy with changes, validated."""
        return dataclasses.replace(self, **changes)

    def as_stored(self):
        """The fields as JSON values (layers a list), as a model file stores them."""
        return {k: list(v) if k == "layers" else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_stored(cls, stored):
        """The Recipe a model file holds: today's `recipe` member, or the `settings` of older files,
        which lack what was added since (OLD_DEFAULTS) and held layers as text and other keys
        (ignored). ValueError or TypeError when it is not a valid recipe."""
        if not isinstance(stored, dict):
            raise TypeError(f"the recipe must be a JSON object, got {type(stored).__name__}")
        values = {**OLD_DEFAULTS, **{k: v for k, v in stored.items() if k in FIELDS}}
        if isinstance(values.get("layers"), str):
            values["layers"] = parse_layers(values["layers"])
        missing = [k for k in FIELDS if k not in values]
        if missing:
            raise ValueError(f"the recipe lacks {', '.join(missing)}")
        return cls(**values)


# What model files written before a field existed trained with.
OLD_DEFAULTS = {"activation": "relu", "alpha": 0.0}

# Recipes: `fastnet` is the measured default (README, docs/recipe.md), `seed` the blog walkthrough's.
PRESETS = {
    "fastnet": {},
    "seed": dict(lr=5e-4, schedule="constant", warmup=0, standardize=False, val_split=0, beta1=0.9, beta2=0.999),
}


def make(name=str, **values):
    """Recipe(**values), a field out of range raised as a ValueError or TypeError whose message names
    it as name(field) does: a flag for the command line, an argument for fastnet.fit."""
    try:
        return Recipe(**values)
    except FieldError as exc:
        raise exc.named(name) from None


def check_threads(threads, name="threads"):
    """threads as an int, or None; ValueError unless it is an integer from 1 to MAX_THREADS."""
    if threads is None:
        return None
    if not (_int(threads) and 1 <= threads <= MAX_THREADS):
        raise ValueError(f"{name} must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return int(threads)


def new_state(recipe, train_images, scaling=None):
    """A fresh model (He initialisation), optimiser and generator for recipe.

    The input scaling comes from the training images alone (never the validation or test images),
    see input_scaling; `scaling` defaults to recipe.standardize's meaning on the command line:
    "standardize" when on, "pixels" (uint8 pixels to [0, 1]) when off.
    """
    rng = np.random.default_rng(recipe.seed)
    scale, shift = input_scaling(train_images, scaling or ("standardize" if recipe.standardize else "pixels"))
    check_input_range(train_images, scale, shift, recipe.dtype)
    model = MLP.he_init(recipe.layers, rng, np.dtype(recipe.dtype), input_scale=scale, input_shift=shift,
                        activations=hidden_layers(recipe.layers, recipe.activation))
    return TrainState(model, new_optimizer(recipe, model), rng)


def new_optimizer(recipe, model):
    """A fresh optimiser of kind recipe.optimizer with the recipe's hyper-parameters, for model."""
    kind = OPTIMIZERS[recipe.optimizer]
    return kind(model.params.size, model.dtype, **{k: getattr(recipe, k) for k in kind.HYPER})


SCALINGS = ("standardize", "pixels", "none")


def input_scaling(images, how):
    """Per-feature (scale, shift), each (D,), such that a network's inputs are images * scale + shift.

    standardize: mean 0 and deviation 1 on the training images. uint8 images are pixels: their
      moments on the [0, 1] scale, the deviation floored at SD_FLOOR (pixel_moments), so
      x = (p/255 - mean) / sd. Any other dtype: feature_moments, x = (v - mean) / sd.
    pixels: uint8 pixels mapped to [0, 1] (the command line's --no-standardize); others as they are.
    none: the values as they are.
    """
    if how == "standardize":
        if images.dtype == np.uint8:
            mean, sd = pixel_moments(images)
            return 1 / (255 * sd), -mean / sd
        mean, sd = feature_moments(images)
        return 1 / sd, -mean / sd
    if how == "pixels" and images.dtype == np.uint8:
        return 1 / 255, 0.0
    if how in SCALINGS:
        return 1.0, 0.0
    raise ValueError(f"unknown input scaling {how!r}; expected one of {', '.join(SCALINGS)}")


# Border pixels of Fashion-MNIST are nearly always 0: dividing by their tiny deviation would
# turn a rare faint pixel into a huge input. A floor on the [0, 1] scale.
# docs/performance.md#constants-and-where-they-come-from
SD_FLOOR = 0.05


def pixel_moments(images, chunk=2048):
    """Per-pixel mean and deviation (floored at SD_FLOOR) of uint8 images scaled to [0, 1].

    The sums of pixels and of their squares are integers, summed exactly (int64, in blocks: no
    copy of the whole set), then divided once: each moment is rounded once, and no float64 sum
    drifts with the order of 60,000 terms; and less than half the time of float64 sums
    (docs/performance.md)."""
    n, d = images.shape
    total, squares = np.zeros(d, np.int64), np.zeros(d, np.int64)
    for start in range(0, n, chunk):
        block = images[start : start + chunk].astype(np.int32)  # 255² fits; a block's sum too
        total += block.sum(axis=0)
        block *= block
        squares += block.sum(axis=0)
    mean = total / (255.0 * n)
    sd = np.sqrt(np.maximum(squares / (255.0 * 255.0 * n) - mean**2, 0))
    return mean, np.maximum(sd, SD_FLOOR)


# Features larger than this in magnitude, or (not 0) smaller than its inverse, have their moments
# measured in units of a power of two near their largest value: beyond it a float32 network cannot
# take them raw, rounding noise of a constant one's mean, left after centring, would be larger than
# 1, and below its inverse a variance underflows toward 0.
HUGE_FEATURE = 2.0**64


def feature_moments(X, chunk=4096):
    """Per-feature mean and deviation of real-valued rows X (N, D), in float64, two passes.

    No floor: features have their own units, so none fits all. A feature whose variance is within
    the rounding error of computing it (a constant feature, or one that differs only by rounding)
    gets deviation 1: it is centred, not blown up. The bound is scikit-learn StandardScaler's:
    var <= N·eps·var + (N·mean·eps)^2. A feature beyond HUGE_FEATURE, or whose sums overflow float64,
    (or below its inverse) is measured again in units of a power of two u near its largest value, which
    scale it exactly (the same moments, without overflow or underflow); if constant, it gets deviation
    u, so that its rounding noise after centring is below 1.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mean, var = _moments(X, chunk)
        peak = np.maximum(X.max(axis=0), -X.min(axis=0)).astype(np.float64)
    exponent = np.zeros(X.shape[1], np.int64)
    huge = ~(np.isfinite(mean) & np.isfinite(var)) | (peak > HUGE_FEATURE) | ((peak < 1 / HUGE_FEATURE) & (peak > 0))
    if huge.any():  # all columns, so that each is summed in the order of the plain pass (a copy, rare)
        exponent[huge] = np.frexp(peak[huge])[1]
        scaled_mean, scaled_var = _moments(np.ldexp(X.astype(np.float64), -exponent), chunk)
        mean[huge], var[huge] = scaled_mean[huge], scaled_var[huge]
    n = len(X)
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2  # the same test in any power-of-two unit
    with np.errstate(over="ignore"):  # a deviation near the largest float64 may round to inf: check_input_range
        return np.ldexp(mean, exponent), np.ldexp(np.where(constant, 1.0, np.sqrt(var)), exponent)


def _moments(X, chunk):
    """Per-feature mean and (population) variance of rows X in float64, without a float64 copy of X."""
    n = len(X)
    mean = np.zeros(X.shape[1])
    for start in range(0, n, chunk):  # float64 sums without a float64 copy of the set
        mean += X[start : start + chunk].sum(axis=0, dtype=np.float64)
    mean /= n
    var = np.zeros(X.shape[1])
    for start in range(0, n, chunk):
        var += ((X[start : start + chunk] - mean) ** 2).sum(axis=0)
    return mean, var / n


def check_input_range(X, scale, shift, dtype):
    """InputError when real-valued rows X, scaled as x * scale + shift, do not fit a network of dtype:
    a scale that rounds below its smallest normal number (to 0) or a scale or shift that overflows in
    dtype, or inputs beyond the square root of its largest number (past it, products and sums
    overflow as the network trains). uint8 pixels fit; None (no rows: a caller that scales none) too."""
    if X is None or X.dtype == np.uint8 or not len(X):
        return
    dtype = np.dtype(dtype)
    limit = np.sqrt(np.finfo(dtype).max)
    scale = np.broadcast_to(np.asarray(scale, np.float64), X.shape[1:])
    shift = np.broadcast_to(np.asarray(shift, np.float64), X.shape[1:])
    with np.errstate(over="ignore", invalid="ignore"):
        stored_scale, stored_shift = scale.astype(dtype), shift.astype(dtype)
        high, low = X.max(axis=0).astype(np.float64), X.min(axis=0).astype(np.float64)
        inputs = np.maximum(np.abs(high * scale + shift), np.abs(low * scale + shift))  # x·scale+shift is linear
    tiny = np.finfo(dtype).tiny  # below it a scale has lost its precision (subnormal) or is 0 (an infinite deviation)
    lost = ~np.isfinite(stored_scale) | ~np.isfinite(stored_shift) | (np.abs(stored_scale) < tiny)
    bad = np.flatnonzero(lost | ~(inputs <= limit))
    if len(bad):
        j = int(bad[0])
        peak = max(abs(high[j]), abs(low[j]))
        raise InputError(f"feature {j} of the training rows (values up to {peak:.3g} in magnitude) does not fit a "
                         f"{dtype} network: its scaling or its inputs overflow or vanish in {dtype} (inputs must "
                         f"stay within {limit:.3g}); rescale it (or standardise it), or use float64")


def eval_rows_of(n_train, val_split, test_rows, train_pass=False):
    """The most rows a run evaluates at once: its validation or test set, or with a pass over the
    training rows after each epoch (training.fit's train_pass), those."""
    return max(held_out(n_train, val_split), test_rows, n_train if train_pass else 0)


def held_out(n, val_split):
    """How many of n training images to hold out for validation: a count as given, or a fraction of
    n, rounded, keeping at least one image on each side when the fraction is above 0."""
    if isinstance(val_split, int):
        if val_split >= n:
            raise InputError(f"holding out {val_split} rows for validation leaves none to train on (the set has {n})")
        return val_split
    if val_split <= 0 or n < 2:
        return 0
    return min(max(round(val_split * n), 1), n - 1)


def split(images, labels, val_split, seed):
    """(train, val): the rows trained on and the rows held out, each an (images, labels) pair.

    held_out(n, val_split) rows are drawn with a generator of its own ([seed, 1]), so the split
    does not move the training order. The training rows are gathered into a C-contiguous copy
    (the compiled step reads whole rows); with nothing held out, the arrays themselves are used.
    """
    n_val = held_out(len(labels), val_split)
    if n_val == 0:
        return (images, labels), (images[:0], labels[:0])
    train_idx, val_idx = split_validation(len(labels), n_val, np.random.default_rng([seed, 1]))
    return (np.ascontiguousarray(images[train_idx]), labels[train_idx]), (images[val_idx], labels[val_idx])


def peak_bytes(sizes, batch_size, dtype, data_bytes, eval_rows=2048, threads=1, backend="numba", optimizer="adam",
               pixels=True, api=False, scaled_rows=None):
    """A generous estimate of the bytes a training run still allocates: the largest of its phases,
    after data_bytes (the copies still to be made: the training rows that split gathers).

    - the input scaling's moments, in blocks of rows (uint8 pixels as int32, other rows in float64);
    - the He initialisation: the parameters, two float64 draws of the largest weight matrix;
    - training: parameters, gradients and Adam's moments, the step's workspace (kernels.mlp_workspace:
      batch rows of every layer, a partial product per thread but the first), and the largest of a
      step's temporaries (the compiled step has none; the numpy backend's float64 batch, layer
      products and Adam's expressions), an evaluation of eval_rows rows (their logits, a workspace
      of at most 2,048 of them; the compiled one's tiles of kernels.TILE_ROWS rows) and, for fastnet.fit and the estimator (api), the compilation's
      copy of the network and its optimiser.
    eval_rows is the most rows evaluated at once (eval_rows_of), scaled_rows the rows the input
    scaling reads (the training set; default eval_rows). Checked against the peak that tracemalloc
    measures in tests/test_memory.py."""
    item = np.dtype(dtype).itemsize
    params = parameter_count(sizes)
    widest = max(a * b for a, b in zip(sizes, sizes[1:]))  # the largest weight matrix
    inputs, width, top, classes = sizes[0], sum(sizes[1:]), max(sizes), sizes[-1]
    rows, evals = batch_size, min(eval_rows, 2048)
    moments = 2 if optimizer == "adam" else 0
    scaled = eval_rows if scaled_rows is None else scaled_rows
    scaling = min(scaled, 2048) * inputs * 8 if pixels else min(scaled, 4096) * inputs * 16
    init = params * item + 2 * 8 * widest
    state = (2 + moments) * params * item
    workspace = rows * (inputs + 2 * width) * item + 8 * rows + (max(threads, 1) - 1) * rows * sizes[1] * item
    evaluation = eval_rows * classes * item + evals * (inputs + 2 * width) * item
    step = 0
    if backend == "numpy":  # the reference allocates as NumPy expressions do, one phase at a time
        passes = rows * (inputs + width) * item + max(3 * 8 * rows * inputs,
                                                      3 * rows * top * item + 4 * 8 * rows * classes + widest * item)
        step = max(passes, (moments + 3) * params * item + 2 * 8 * widest)
        evaluation += evals * (inputs + top) * item + max(3 * 8 * evals * inputs, 3 * evals * top * item,
                                                          3 * 8 * eval_rows * classes)
    else:  # the compiled evaluation's tiles: a tile's inputs and a layer's outputs, one tile a thread
        evaluation += max(threads, 1) * (TILE_ROWS + 3) * 2 * top * item
    copy = (2 + moments) * params * item if api else 0
    small = 1 << 20  # a run's small buffers: each chunk's step constants and counts, the layout, Python's objects
    return data_bytes + small + max(scaling, init, state + workspace + max(step, evaluation, copy))


def check_memory(sizes, batch_size, dtype, data_bytes, name=lambda key: f"--{key.replace('_', '-')}", **run):
    """InputError, before any work, when the run would need more memory than this process may still
    allocate (fastnet.memory.available: free memory, ulimit -v, a container's cgroup limit).
    run: peak_bytes's description of the run; name(key) names a setting in the message."""
    need, have = peak_bytes(sizes, batch_size, dtype, data_bytes, **run), memory.available()
    if have is not None and need > have:
        raise InputError(f"this run needs about {memory.describe(need)} of memory but {memory.describe(have)} are "
                         f"available; use smaller {name('layers')} or {name('batch_size')}, or {name('dtype')} float32")
