"""fastnet: a from-scratch MLP trainer for arrays and IDX image data sets such as Fashion-MNIST.

The Python API, loaded on first use so that `import fastnet` stays fast:
fastnet.fit(X, y, ...) -> fastnet.Model; fastnet.load(path) -> fastnet.Model (fastnet.api);
fastnet.datasets (load_fashion_mnist, load_mnist, load_idx); fastnet.sklearn.MLPClassifier (needs
scikit-learn); fastnet.export (ONNX, needs onnx). The command lines are python -m fastnet.train, .evaluate,
.predict, .show, .export, .gradcheck.
"""

import os as _os
import signal as _signal
import sys as _sys

__version__ = "0.1.0"
__all__ = ["fit", "load", "Model", "datasets"]

_API = {"fit", "load", "Model"}
_MODULES = {"api", "datasets", "export", "sklearn"}


def __getattr__(name):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API | _MODULES)


def _stopped_while_starting(signum, frame):
    """Ctrl-C, SIGTERM or SIGHUP while a command still imports its modules: nothing is open or half
    written yet, so exit 130 with one line (not a KeyboardInterrupt traceback out of an import).
    The process ends at once: further signals are ignored meanwhile. os.write: a signal may land
    while Python is inside sys.stderr's own buffer."""
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_IGN)
    try:
        _os.write(2, {_signal.SIGINT: b"interrupted\n", _signal.SIGTERM: b"terminated\n"}.get(signum, b"hung up\n"))
    except OSError:
        pass
    # Not SystemExit: raised while an import runs C code, it can be cleared there and lost, and the
    # run then trained on with its stop signals ignored (seen: 1 of 60 bursts). Nothing is open yet.
    _os._exit(130)


if _sys.argv[:1] == ["-m"]:  # `python -m fastnet.<command>`; fastnet.cli.run takes over once it starts
    for _sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        if _signal.getsignal(_sig) is not _signal.SIG_IGN:  # nohup, a background job: leave it ignored
            _signal.signal(_sig, _stopped_while_starting)
