"""fastnet: a from-scratch MLP trainer for arrays and IDX image data sets such as Fashion-MNIST.

The Python API, loaded on first use so that `import fastnet` stays fast:
fastnet.fit(X, y, ...) -> fastnet.Model; fastnet.load(path) -> fastnet.Model (fastnet.api);
fastnet.datasets (load_fashion_mnist, load_mnist, load_idx); fastnet.sklearn.MLPClassifier (needs
scikit-learn). The command lines are python -m fastnet.train, .evaluate, .predict, .show, .gradcheck.
"""

__version__ = "0.1.0"
__all__ = ["fit", "load", "Model", "datasets"]

_API = {"fit", "load", "Model"}
_MODULES = {"api", "datasets", "sklearn"}


def __getattr__(name):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastnet' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API | _MODULES)
