"""Fixtures of the hostile tests: the subprocesses' environment, a tiny data set, a trained model."""

import os

import pytest

from tests.helpers import TINY_ARGS, clustered_idx_set, run_cli


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: a private cache, one thread, no network, no user NUMBA_ settings."""
    root = tmp_path_factory.mktemp("hostile-env")
    e = dict(os.environ, PYTHONUNBUFFERED="1", FASTNET_CACHE_DIR=str(root / "cache"),
             FASTNET_MIRROR="http://127.0.0.1:9", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for var in ("FASHION_MNIST_DIR", "MNIST_DIR", "NUMBA_NUM_THREADS", "NUMBA_DISABLE_JIT"):
        e.pop(var, None)
    return e


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """300 training and 60 test images of 8x8 pixels in 4 classes."""
    return clustered_idx_set(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def model(tmp_path_factory, env, tiny):
    """A model trained one epoch on tiny (a finished run's checkpoint)."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    proc = run_cli("fastnet.train", *TINY_ARGS, "--data-dir", tiny, "--save", path, env=env)
    assert proc.returncode == 0, proc.stderr
    return path
