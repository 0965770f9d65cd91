"""The one place where `--backend` picks the kernel module that fastnet computes with.

The backends and their contract are declared in `kernels` (kernels.BACKENDS, kernels.load_backend);
this turns what can go wrong in picking one into the one-line error a command reports.
"""

from kernels import BACKENDS, REFERENCE, load_backend  # noqa: F401 (BACKENDS: the CLIs' --backend choices)

from .errors import InputError
from .files import signals_held

DEFAULT_BACKEND = "numba"
BACKEND_NAMES = tuple(BACKENDS)  # the --backend choices


def get_backend(name):
    """Return the kernel module of a backend name (one of kernels.BACKENDS), checked against the contract.

    A stop signal waits for the import (files.signals_held): raised inside it, the KeyboardInterrupt
    reaches Numba's C extensions, which print its traceback and turn it into an ImportError."""
    try:
        with signals_held():
            return load_backend(name)
    except ImportError as exc:
        raise InputError(f"the {name} backend is unavailable ({exc}); pass --backend {REFERENCE}") from None
    except ValueError as exc:  # not a registered name, or a module that breaks the kernel contract
        raise InputError(str(exc)) from None
