"""The training recipe: presets, input standardisation, and a fresh model + optimiser state.

Shared by the command line, the benchmarks and the Python API, so that all of them train the
same way from the same settings.
"""

import numpy as np

from kernels import ACTIVATIONS, parameter_count

from . import memory
from .errors import InputError
from .model import MLP, hidden_layers, parse_layers
from .optim import OPTIMIZERS
from .training import TrainState, fit, split_validation

MAX_THREADS = 4096  # more is a typo, and overflows the C int that BLAS libraries take

# Recipes: `seed` is the blog walkthrough's, `fastnet` the measured default (see README).
PRESETS = {
    "fastnet": dict(lr=2e-3, schedule="cosine", warmup=0, standardize=True, val_split=0.05,
                    beta1=0.8, beta2=0.99),
    "seed": dict(lr=5e-4, schedule="constant", warmup=0, standardize=False, val_split=0,
                 beta1=0.9, beta2=0.999),
}


def new_state(s, sizes, train_images, scaling=None):
    """A fresh model (He initialisation), optimiser and generator for settings s.

    The input scaling comes from the training images alone (never the validation or test images),
    see input_scaling; `scaling` defaults to the command line's meaning of s["standardize"]:
    "standardize" when on, "pixels" when off. The hidden layers get s["activation"] (relu where s
    has none); the optimiser's hyper-parameters that s lacks (alpha, say) keep their defaults.
    """
    rng = np.random.default_rng(s["seed"])
    scale, shift = input_scaling(train_images, scaling or ("standardize" if s["standardize"] else "pixels"))
    check_input_range(train_images, scale, shift, s["dtype"])
    model = MLP.he_init(sizes, rng, np.dtype(s["dtype"]), input_scale=scale, input_shift=shift,
                        activations=hidden_layers(sizes, s.get("activation", "relu")))
    return TrainState(model, new_optimizer(s, model), rng)


def new_optimizer(s, model):
    """A fresh optimiser of kind s["optimizer"] with its hyper-parameters from s, for model."""
    kind = OPTIMIZERS[s["optimizer"]]
    return kind(model.params.size, model.dtype, **{k: s[k] for k in kind.HYPER if k in s})


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


def _is_int(x, least):
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) and x >= least


def check(s, name):
    """InputError unless every recipe value in s has its type and range.

    name(key) is how the message names a setting: "--batch-size" for a flag, "batch_size" for a
    Python argument, "the checkpoint's batch_size" for a resumed file.
    """
    for key, least in {"epochs": 1, "batch_size": 1, "warmup": 0, "seed": 0}.items():
        if not _is_int(s.get(key), least):
            raise InputError(f"{name(key)} must be an integer >= {least}, got {s.get(key)!r}")
    split = s.get("val_split")
    if not (_is_int(split, 0) or (isinstance(split, float) and 0 <= split < 1)):
        raise InputError(f"{name('val_split')} must be a fraction in [0, 1) or a count >= 0, got {split!r}")
    for key in ("beta1", "beta2"):
        if not (isinstance(s.get(key), float) and 0 <= s[key] < 1):
            raise InputError(f"{name(key)} must be a number in [0, 1), got {s.get(key)!r}")
    choices = {"schedule": ("constant", "cosine"), "optimizer": tuple(OPTIMIZERS), "dtype": ("float32", "float64"),
               "activation": ACTIVATIONS}
    for key, allowed in choices.items():
        if s.get(key, "relu" if key == "activation" else None) not in allowed:
            raise InputError(f"{name(key)} must be one of {', '.join(allowed)}, got {s.get(key)!r}")
    alpha = s.get("alpha", 0.0)
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 <= alpha < float("inf")):
        raise InputError(f"{name('alpha')} must be a finite number >= 0, got {alpha!r}")
    eps = s.get("eps")
    if not (isinstance(eps, float) and 0 < eps < float("inf")):
        raise InputError(f"{name('eps')} must be a positive number, got {eps!r}")
    tiny = float(np.finfo(s["dtype"]).tiny)
    if eps < tiny:  # below the smallest normal it rounds to 0 or loses precision; Adam would divide by 0
        raise InputError(f"{name('eps')} {eps:g} is below the smallest normal {s['dtype']} ({tiny:.3g})")
    lr = s.get("lr")
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < float("inf")):
        raise InputError(f"{name('lr')} must be a positive finite number, got {lr!r}")
    if not isinstance(s.get("layers"), str):
        raise InputError(f"{name('layers')} must look like 784,128,10, got {s.get('layers')!r}")
    parse_layers(s["layers"])
    if s.get("threads") is not None and not (_is_int(s["threads"], 1) and s["threads"] <= MAX_THREADS):
        raise InputError(f"{name('threads')} must be an integer from 1 to {MAX_THREADS}, got {s['threads']!r}")


def eval_rows_of(n_train, val_split, test_rows, train_pass=False):
    """The most rows a run evaluates at once: its validation or test set, or with a pass over the
    training rows after each epoch (training.fit's train_pass), those."""
    return max(held_out(n_train, val_split), test_rows, n_train if train_pass else 0)


def held_out(n, val_split):
    """How many of n training images to hold out for validation: a count as given, or a fraction of
    n, rounded, keeping at least one image on each side when the fraction is above 0."""
    if isinstance(val_split, int):
        if val_split >= n:
            raise InputError(f"--val-split {val_split} leaves no training images (the set has {n})")
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


def run_training(state, backend, train, val, s, on_epoch=None, on_batch=None, stop=None, parts=0, share=None,
                 train_pass=False):
    """Train state up to s["epochs"] with the recipe s (training.fit); True when all epochs ran.

    Non-finite values raise DivergenceError in fit, so NumPy's warnings about them are silenced.
    parts, share and train_pass: how the batch is cut, how threads are shared, whether the
    training rows are evaluated after each epoch (training.fit; else the epoch's running accuracy).
    """
    with np.errstate(all="ignore"):
        return fit(state, backend, train, val, s["epochs"], s["batch_size"], s["lr"], s["schedule"], s["warmup"],
                   on_epoch, on_batch, stop, parts, share, train_pass=train_pass)


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
      of at most 2,048 of them) and, for fastnet.fit and the estimator (api), the compilation's
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
