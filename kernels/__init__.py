"""Compute primitives of an MLP, once per backend, and the contract every backend keeps.

A backend is a module that exports every kernel of KERNEL_NAMES with the reference's signature,
and the attributes of BACKEND_ATTRIBUTES. BACKENDS registers them by the names the command line
uses; load_backend imports one and checks it. `kernels.reference` (NumPy, reads like the maths)
is the specification; `kernels.jit` (Numba) is fast. Adding a backend: its module, one line in
BACKENDS. The kernels know nothing of models beyond the network description below.

A network is described to the kernels by two int64 arrays: sizes (L+1,) = (D0, ..., K), and
activations (L,), layer l's activation as a code of ACTIVATIONS. The last layer's is identity:
its output (the logits) goes into softmax-cross-entropy. Parameters live in one flat buffer
(layer_views). The kernels that compute a training loss (mlp_gradients, mlp_train_steps) take alpha,
an L2 penalty of the weights, in scikit-learn's convention (kernels.reference.mlp_gradients).
`JIT_OPTIONS` is the one place where Numba compiler options are set.
"""

import importlib
import inspect
import os
import sys
import warnings
from collections import namedtuple

import numpy as np

BACKENDS = {  # name, as --backend spells it -> module
    "numpy": "kernels.reference",
    "numba": "kernels.jit",
}
REFERENCE = "numpy"  # the backend whose kernels are the specification (and their signatures the contract)

KERNEL_NAMES = (
    "gather_rows",
    "linear_forward",
    "activation_forward",
    "activation_backward",
    "softmax",
    "cross_entropy",
    "softmax_xent_backward",
    "softmax_cross_entropy",
    "linear_backward",
    "mlp_gradients",
    "mlp_adam_step",
    "mlp_train_steps",
    "mlp_logits",
    "adam_update",
    "sgd_update",
    "all_finite",
)

# Module attributes a backend provides besides its kernels, and what reads them.
BACKEND_ATTRIBUTES = {
    "BLAS_THREADS": "BLAS threads it runs best with, None for all (fastnet.threads.set_threads)",
}

# Activation name <-> code: a code is the name's position here. Kernels take names (str); the
# whole-network kernels take an (L,) int64 array of codes, which compiled code can dispatch on.
# New activations go at the end: model files store names, but codes must not move under cached code.
ACTIVATIONS = ("identity", "relu", "tanh", "logistic")
IDENTITY, RELU, TANH, LOGISTIC = 0, 1, 2, 3


# Optimiser name <-> code, as activations: the update a training step applies to each band of the
# parameters (mlp_train_steps), chosen inside the compiled step by its code. Each has its update
# rule in every backend (sgd_update, adam_update), the state it keeps per parameter (saved in model
# files) and its hyper-parameters, in the order mlp_train_steps takes them. New ones go at the end.
OPTIMIZERS = ("gd", "adam")
GD, ADAM = 0, 1
OPTIMIZER_STATE = {"gd": (), "adam": ("m", "v")}
OPTIMIZER_HYPER = {"gd": (), "adam": ("beta1", "beta2", "eps")}


def activation_codes(names):
    """(L,) int64 codes of activation names, e.g. ('relu', 'identity') -> [1, 0]."""
    unknown = [name for name in names if name not in ACTIVATIONS]
    if unknown:
        raise ValueError(f"unknown activation {unknown[0]!r}; choose one of {', '.join(ACTIVATIONS)}")
    return np.array([ACTIVATIONS.index(name) for name in names], np.int64)


def activation_names(sizes, activations):
    """The names of a network's activation codes, after checking them against sizes.

    ValueError unless there is one known code per layer and the last layer's is identity.
    """
    codes = [int(c) for c in np.asarray(activations).ravel()]
    if len(codes) != len(sizes) - 1:
        raise ValueError(f"{len(sizes) - 1} layers need {len(sizes) - 1} activations, got {len(codes)}")
    if not all(0 <= c < len(ACTIVATIONS) for c in codes):
        raise ValueError(f"activation codes must be 0..{len(ACTIVATIONS) - 1} ({', '.join(ACTIVATIONS)}), got {codes}")
    if codes[-1] != IDENTITY:
        raise ValueError("the output layer's activation must be identity: softmax-cross-entropy follows it")
    return [ACTIVATIONS[c] for c in codes]


class ContractError(ValueError):
    """A registered backend lacks a kernel or an attribute, or a kernel's signature differs."""


def contract_problems(module):
    """What module lacks of the backend contract, one line per problem; empty when it keeps it."""
    spec = importlib.import_module(BACKENDS[REFERENCE])
    problems = [f"no attribute {name}" for name in BACKEND_ATTRIBUTES if not hasattr(module, name)]
    for name in KERNEL_NAMES:
        kernel, want = getattr(module, name, None), inspect.signature(getattr(spec, name))
        if not callable(kernel):
            problems.append(f"no kernel {name}")
        elif inspect.signature(kernel) != want:
            problems.append(f"{name}{inspect.signature(kernel)} differs from the reference's {name}{want}")
    return problems


def load_backend(name):
    """The kernel module registered as `name` in BACKENDS, checked against the contract.

    ValueError for a name not registered, ImportError when the module cannot be imported (Numba
    missing, say), ContractError (a ValueError) when it breaks the contract.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = _import(BACKENDS[name])
    problems = contract_problems(module)
    if problems:
        raise ContractError(f"the {name} backend ({module.__name__}) breaks the kernel contract: {'; '.join(problems)}")
    return module


def _import(module_name):
    """Import a backend's module, turning what Numba makes of a bad environment into a ValueError.

    Numba reads its NUMBA_* environment variables once, when first imported: an unparsable value
    is a warning with a traceback and is then ignored, and NUMBA_NUM_THREADS=0 a ValueError; both
    become one ValueError naming the variable. A cached kernel (JIT_OPTIONS) needs a writable folder:
    the package's __pycache__, Numba's user cache or $NUMBA_CACHE_DIR. Where none is writable Numba
    refuses to define the kernel ("no locator available"); the kernels are then compiled uncached,
    for this run only, with a one-line note on stderr.
    """
    threads = os.environ.get("NUMBA_NUM_THREADS")
    if threads is not None and not (threads.strip().isdigit() and int(threads) > 0):
        raise ValueError(f"NUMBA_NUM_THREADS={threads!r} is not a positive integer; unset it or give a thread count")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            return importlib.import_module(module_name)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
        finally:
            for w in caught:
                first = str(w.message).splitlines()[0]
                if first.startswith("Environment variable 'NUMBA_"):
                    raise ValueError(f"{first.rstrip('.')}; unset it or fix its value") from None
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    JIT_OPTIONS["cache"] = False  # nowhere to keep compiled code: compile for this run only
    print(f"note: no writable folder for Numba's cache (the package folder, {os.path.expanduser('~')} and "
          "NUMBA_CACHE_DIR are read-only or unset); the kernels are compiled for this run only", file=sys.stderr)
    return importlib.import_module(module_name)


# Numba options for every kernel in kernels.jit. cache: compiled code is kept on disk (in
# __pycache__ beside the source, or Numba's user-wide cache directory where that is read-only),
# so a second run does not compile again. nogil: kernels may run beside other threads.
# error_model "numpy": division by zero gives inf/nan instead of raising, which removes a branch
# from every inner loop. fastmath is not global: FASTMATH below is opt-in per kernel, and leaves
# out nnan and ninf (with them LLVM may assume no NaN exists and fold isfinite checks to True).
JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
# Rows of a tile of the compiled evaluation (jit.mlp_logits): a speed setting, from the measurement in
# docs/performance.md ("Evaluation"): small enough to share a batch among threads and keep a tile's
# activations in cache, a multiple of 4 rows. A tile's inputs and a layer's outputs are allocated
# inside the kernel, one tile per running thread (fastnet.recipe.peak_bytes counts them).
TILE_ROWS = 32
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def layer_views(flat, sizes):
    """Split a flat (P,) buffer into per-layer views W[l] (D_l, D_l+1) and b[l] (D_l+1,).

    The layout every whole-network kernel assumes: W0, b0, W1, b1, ... back to back, row-major.
    """
    Ws, bs, at = [], [], 0
    for d_in, d_out in zip(sizes, sizes[1:]):
        Ws.append(flat[at : at + d_in * d_out].reshape(d_in, d_out))
        at += d_in * d_out
        bs.append(flat[at : at + d_out])
        at += d_out
    return Ws, bs


def parameter_count(sizes):
    """P, the length of the flat buffer of a network with these layer sizes."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


# Scratch of the whole-network kernels. inputs (rows·D0,); activations and deltas (rows·(D1+...+DL),),
# one rows·D_l block per layer l = 1..L, back to back; labels (rows,); parts: how many parts a training
# step cuts a batch into (0: as many as Numba runs threads at each call). Fixing parts fixes the
# rounding: a run gives the same numbers on however many threads actually run them. mlp_logits
# ignores parts: its rows' bits never depend on the cut (kernels.jit.TILE_ROWS). partials (up to (parts-1)·rows·D1):
# a training step cuts the first layer's product X·W0 along the D0 inputs, one piece per part, and
# sums the pieces (jit._mlp); pieces 1.. are written here (empty: the product is not cut).
MLPWork = namedtuple("MLPWork", "inputs activations deltas labels parts partials")


def _numba_threads():
    """Numba's threads now, where a backend has loaded Numba; else 1: no compiled kernel runs, and
    the numpy backend must not load Numba (nor start its thread pool) for a workspace it ignores."""
    numba = sys.modules.get("numba")
    return numba.get_num_threads() if numba is not None else 1


def mlp_workspace(sizes, rows, dtype, parts=0, training=True):
    """Scratch buffers (MLPWork) for mlp_gradients and mlp_logits on batches of up to `rows` rows,
    cut into `parts` parts (0: as many as Numba runs threads now, for the partials). Allocated once
    per run; the reference ignores it. training=False leaves out what only training steps use."""
    width = sum(sizes[1:])
    pieces = (int(parts) or _numba_threads()) - 1 if training else 0
    return MLPWork(np.zeros(rows * sizes[0], dtype), np.zeros(rows * width, dtype), np.zeros(rows * width, dtype),
                   np.zeros(rows, np.intp), int(parts), np.zeros(pieces * rows * sizes[1], dtype))
