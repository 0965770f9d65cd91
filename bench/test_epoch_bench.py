"""One whole training epoch per backend beside its floor, the epoch's matrix products timed alone.

The epoch is fastnet's own loop (training.train_epoch): float32, batches of 128, 784-128-10, Adam at
a constant learning rate, on the real Fashion-MNIST training split. Each backend trains one untimed
warm-up epoch (compiling or loading the JIT, checking the loss went down), then three timed epochs
of the same run. extra_info gives samples/s and the epoch/floor ratio: how many times its
unavoidable products the whole epoch costs.
"""

import numpy as np
import pytest

from bench.floor import epoch_gflop, floor_epoch, floor_seconds
from fastnet.model import MLP, Workspace
from fastnet.optim import Adam
from fastnet.threads import set_threads
from fastnet.training import TrainState, train_epoch

SIZES, BATCH, LR = (784, 128, 10), 128, 5e-4
GROUP = "epoch 784-128-10 b128 f32"


@pytest.fixture(scope="module")
def floor():
    """Median seconds of the floor at the epoch's shapes (BLAS on every core), for the ratio."""
    set_threads()
    return floor_seconds(BATCH, SIZES, repeats=3)[0]


def one_epoch(backend, images, labels):
    """A function that trains one more epoch of one fresh network each call and returns its mean loss."""
    rng = np.random.default_rng(0)
    model = MLP.he_init(SIZES, rng)
    state = TrainState(model, Adam(model.params.size, model.dtype), rng)
    ws = Workspace(SIZES, BATCH, model.dtype)
    return lambda: train_epoch(state, backend, images, labels, BATCH, lambda step: LR, ws)


def test_epoch(benchmark, backend_name, backend, train_data, floor, report):
    images, labels = train_data
    set_threads(None, backend.BLAS_THREADS)
    run = one_epoch(backend, images, labels)
    assert run() < 1.0  # the warm-up epoch learned: ln 10 = 2.3 at the start, ~0.6 over the first epoch
    benchmark.group = GROUP
    benchmark.pedantic(run, rounds=3, iterations=1)
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
    benchmark.extra_info["samples/s"] = len(labels) / seconds
    benchmark.extra_info["epoch/floor"] = seconds / floor
    report(benchmark, backend_name)


def test_floor(benchmark, train_data, report):
    set_threads()
    n = len(train_data[1])
    benchmark.group = GROUP
    benchmark.pedantic(floor_epoch(BATCH, SIZES, n), rounds=5, iterations=1, warmup_rounds=1)
    seconds = benchmark.stats.stats.median if benchmark.stats is not None else float("nan")
    benchmark.extra_info["GFLOP/s"] = epoch_gflop(BATCH, SIZES, n) / seconds
    report(benchmark, "floor")
