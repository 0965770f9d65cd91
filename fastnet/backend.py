"""The one place where `--backend` picks the kernel module that fastnet computes with.

It also passes on what both backends share: the flat parameter layout and the kernels' scratch.
"""

import importlib

from kernels import layer_views, mlp_workspace, parameter_count  # noqa: F401 (re-exported)

from .errors import InputError

BACKENDS = {"numpy": "kernels.reference", "numba": "kernels.jit"}
DEFAULT_BACKEND = "numba"
BACKEND_NAMES = tuple(BACKENDS)


def get_backend(name):
    """Return the kernel module for a backend name ('numpy' or 'numba')."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        raise InputError(f"the {name} backend is unavailable ({exc}); pass --backend numpy") from None


def warm_up(K, dtype):
    """Run every kernel of K once on tiny arrays of `dtype`, laid out as training lays them out.

    Numba compiles (or loads from its cache) one specialisation per dtype and layout on first
    call; doing it here keeps that cost out of the first epoch's time and makes it measurable.
    A kernel that fails to compile becomes one line telling the user how to carry on.
    """
    try:
        _exercise(K, dtype)
    except Exception as exc:
        if K.__name__ == BACKENDS["numpy"]:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(f"the numba backend failed to compile ({type(exc).__name__}: {first}); "
                         "pass --backend numpy") from None


def _exercise(K, dtype):
    """Call every kernel of K once on tiny arrays shaped and typed as training uses them."""
    import numpy as np

    from .model import MLP, Workspace, evaluate, loss_and_grads
    from .optim import OPTIMIZERS

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0], np.uint8)
    model = MLP.he_init((3, 2, 2), rng, dtype)
    ws = Workspace(model.sizes, 4, model.dtype)
    loss_and_grads(model, K, images, rng.permutation(4), labels, ws)
    for name in OPTIMIZERS:
        opt = OPTIMIZERS[name](model.params.size, model.dtype)
        opt.update(K, model.params, ws.grads, 1e-3)
        opt.train_step(K, model, images, rng.permutation(4)[:3], labels, ws, 1e-3)
    K.all_finite(model.params)
    evaluate(model, K, images, labels)
