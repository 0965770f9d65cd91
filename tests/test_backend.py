"""fastnet.backend: the kernel module a --backend name picks, and its one-line errors."""

import signal

import pytest

from fastnet import backend
from fastnet.errors import InputError


def test_a_stop_signal_during_the_backend_import_waits_until_the_import_is_done(monkeypatch):
    """Raised inside Numba's import, a KeyboardInterrupt reaches its C extensions, which print a
    traceback and fail with an ImportError (the hostile sweep's signal_sigint_at_start_up)."""
    imported = []

    def load(name):
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came in the middle of the import
        imported.append(name)
        return "module"

    monkeypatch.setattr(backend, "load_backend", load)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        backend.get_backend("numpy")
    assert imported == ["numpy"]  # the import ran to its end first
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("error, message", [
    (ImportError("numba._devicearray failed to import"),
     "the numba backend is unavailable (numba._devicearray failed to import); pass --backend numpy"),
    (ValueError("unknown backend 'x'"), "unknown backend 'x'"),
])
def test_a_backend_that_cannot_be_had_is_one_input_error(monkeypatch, error, message):
    def load(name):
        raise error

    monkeypatch.setattr(backend, "load_backend", load)
    with pytest.raises(InputError) as info:
        backend.get_backend("numba")
    assert str(info.value) == message and info.value.__cause__ is None


def test_the_backends_load_and_keep_the_contract():
    assert backend.get_backend("numpy").__name__ == "kernels.reference"
    assert backend.get_backend("numba").__name__ == "kernels.jit"
