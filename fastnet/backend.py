"""The one place where `--backend` picks the kernel module that fastnet computes with."""

import importlib

from .errors import InputError

BACKENDS = {"numpy": "kernels.reference", "numba": "kernels.jit"}
DEFAULT_BACKEND = "numba"


def get_backend(name):
    """Return the kernel module for a backend name ('numpy' or 'numba')."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        raise InputError(f"the {name} backend is unavailable ({exc}); pass --backend numpy") from None
